"""bAbI as a training task: batches in length buckets, loss, evaluation.

Stories are joint over the 20 tasks, drawn at random; a batch takes stories
of one length bucket and pads them to the bucket's length, so ``jit``
compiles once per bucket, not once per story. Batches are time-major token
ids; the model one-hot encodes them. The loss is the softmax cross-entropy
at the '-' steps only; a question is answered right when every one of its
answer words is.
"""

from __future__ import annotations

import dataclasses
from typing import (Any, Callable, Dict, List, NamedTuple, Optional,
                    Sequence, Tuple)

import jax
import jax.numpy as jnp
import numpy as np

from experiments.babi_data import Story, Vocabulary
from experiments.tasks.base import TaskBase

BUCKETS = (32, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048)

# Extended Data Table 1: the DNC1 mean question error per task (%).
PAPER_DNC1_MEAN = {1: 9.0, 2: 39.2, 3: 39.6, 4: 0.4, 5: 1.5, 6: 6.9, 7: 9.8,
                   8: 5.5, 9: 7.7, 10: 9.6, 11: 3.3, 12: 5.0, 13: 3.1,
                   14: 11.0, 15: 27.2, 16: 53.6, 17: 32.4, 18: 4.2,
                   19: 64.6, 20: 0.0}
PAPER_DNC1_MEAN_ERROR = 16.7
# Extended Data Table 1's summary rows for DNC1 (20 runs): mean error
# 16.7 +- 7.6 %, failed tasks 11.2 +- 5.4; its best run 4.3 % with 2 failed.
# The best network of all (3.8 %, the main text's figure) is a DNC2 run.
PAPER_DNC1_MEAN_ERROR_SD = 7.6
PAPER_DNC1_FAILED = (11.2, 5.4)
PAPER_DNC1_BEST = (4.3, 2)  # (mean error %, failed tasks) of the best run
PAPER_BEST_MEAN_ERROR = 3.8
PAPER_DNC1_MEAN_CELL = (f"{PAPER_DNC1_MEAN_ERROR} ± {PAPER_DNC1_MEAN_ERROR_SD}"
                        f" (best run {PAPER_DNC1_BEST[0]})")
PAPER_DNC1_FAILED_CELL = (f"{PAPER_DNC1_FAILED[0]} ± {PAPER_DNC1_FAILED[1]}"
                          f" (best run {PAPER_DNC1_BEST[1]})")
# Extended Data Table 1, the NTM column (20 runs): mean error 28.5 +- 2.9 %,
# failed tasks 17.3 +- 0.7, best run 20.1 %. Its per-task means are not
# recoverable from the copy of the table we work from, so
# PAPER_NTM_MEAN stays empty until they are: the table shows "-" per task.
PAPER_NTM_MEAN: Dict[int, float] = {}
PAPER_NTM_MEAN_ERROR = (28.5, 2.9)  # (mean, s.d.) over 20 runs, %
PAPER_NTM_FAILED = (17.3, 0.7)
PAPER_NTM_BEST_MEAN_ERROR = 20.1
FAILED_ABOVE = 5.0  # % error at which a task counts as failed


class BabiBatch(NamedTuple):
  """Time-major, padded to a bucket's length.

  Attributes:
    inputs: ``[T, B]`` int32 word ids (0 = padding).
    targets: ``[T, B]`` int32 answer word ids at the '-' steps, else 0.
    mask: ``[T, B]`` float32, 1 at the '-' steps.
  """

  inputs: np.ndarray
  targets: np.ndarray
  mask: np.ndarray


class EncodedStory(NamedTuple):
  task: int
  inputs: np.ndarray     # [L] word ids
  targets: np.ndarray    # [L] answer ids at '-' steps
  questions: np.ndarray  # [L] question index at '-' steps, -1 elsewhere


def encode(story: Story, vocab: Vocabulary) -> EncodedStory:
  inputs = vocab.encode(story.tokens, f" (task {story.task})")
  answer_steps = np.nonzero(inputs == vocab.index["-"])[0]
  targets = np.zeros_like(inputs)
  targets[answer_steps] = vocab.encode(story.answers,
                                       f" (task {story.task})")
  questions = np.full(inputs.shape, -1, np.int32)
  questions[answer_steps] = story.questions
  return EncodedStory(story.task, inputs, targets, questions)


def bucket_of(length: int, buckets: Sequence[int] = BUCKETS) -> int:
  for bucket in buckets:
    if length <= bucket:
      return bucket
  raise ValueError(f"a story of {length} words is longer than the largest "
                   f"bucket ({buckets[-1]})")


def pad_batch(stories: Sequence[EncodedStory], length: int,
              batch_size: int) -> BabiBatch:
  """Stories into one batch of ``batch_size`` (extra rows all padding)."""
  inputs = np.zeros((length, batch_size), np.int32)
  targets = np.zeros((length, batch_size), np.int32)
  mask = np.zeros((length, batch_size), np.float32)
  for b, story in enumerate(stories):
    n = len(story.inputs)
    inputs[:n, b] = story.inputs
    targets[:n, b] = story.targets
    mask[:n, b] = story.questions >= 0
  return BabiBatch(inputs, targets, mask)


class BabiTask(TaskBase):
  """Joint training over the given stories.

  Args:
    stories: training stories (any tasks).
    vocab: the vocabulary (from the training stories).
    buckets: padded lengths; each batch uses one.
    valid: validation stories for :meth:`evaluate` (``None``: no
      evaluation).
    eval_batch_size: stories per evaluation batch.
  """

  name = "babi"

  def __init__(self, stories: Sequence[Story], vocab: Vocabulary,
               buckets: Sequence[int] = BUCKETS,
               valid: Optional[Sequence[Story]] = None,
               eval_batch_size: int = 32):
    if not stories:
      raise ValueError("no training stories")
    self.vocab = vocab
    self.valid = list(valid) if valid is not None else None
    self.eval_batch_size = eval_batch_size
    self.buckets = tuple(buckets)
    self.input_size = self.output_size = len(vocab)
    encoded = [encode(s, vocab) for s in stories]
    by_bucket: Dict[int, List[EncodedStory]] = {}
    for story in encoded:
      by_bucket.setdefault(bucket_of(len(story.inputs), self.buckets),
                           []).append(story)
    self._by_bucket = dict(sorted(by_bucket.items()))
    counts = np.array([len(v) for v in self._by_bucket.values()], float)
    # Bucket first, in proportion to its stories, then a story uniformly
    # within it: every story is as likely as with uniform sampling.
    self._bucket_probabilities = counts / counts.sum()

  def sample(self, rng: np.random.Generator, batch_size: int,
             bucket: Optional[int] = None) -> BabiBatch:
    """A batch of one bucket; ``bucket`` given: that bucket instead of the
    one ``rng`` draws (``rng`` is used as without it, so the stories are
    those ``rng`` would pick in that bucket)."""
    keys = list(self._by_bucket)
    drawn = keys[rng.choice(len(keys), p=self._bucket_probabilities)]
    bucket = drawn if bucket is None else bucket
    if bucket not in self._by_bucket:
      raise ValueError(f"no training story falls in bucket {bucket}")
    pool = self._by_bucket[bucket]
    chosen = rng.integers(0, len(pool), batch_size)
    return pad_batch([pool[i] for i in chosen], bucket, batch_size)

  def sample_like(self, rng: np.random.Generator, batch_size: int,
                  like: BabiBatch) -> BabiBatch:
    """A batch of ``like``'s shape (its bucket), stories drawn from ``rng``.

    Sweeps (:mod:`experiments.sweep`): member 0 draws its bucket and
    stories; every other member draws its own stories in that bucket, so
    all members' batches of a step have one shape.
    """
    return self.sample(rng, batch_size, bucket=int(np.shape(like.inputs)[0]))

  def loss(self, logits: jax.Array, batch: BabiBatch) -> jax.Array:
    """Softmax cross-entropy at the '-' steps, summed, mean over the batch."""
    log_probs = jax.nn.log_softmax(logits)
    picked = jnp.take_along_axis(log_probs, batch.targets[..., None],
                                 axis=-1)[..., 0]
    return -jnp.sum(picked * batch.mask) / logits.shape[1]

  def metrics(self, logits: jax.Array,
              batch: BabiBatch) -> Dict[str, jax.Array]:
    right = (jnp.argmax(logits, -1) == batch.targets) * batch.mask
    return {"word_error": 1.0 - jnp.sum(right) / jnp.maximum(
        jnp.sum(batch.mask), 1.0)}


  def evaluate(self, predict: Callable, params: Any,
               step: int) -> Dict[str, float]:
    """Question error per task on the validation stories (%), its mean and
    the failed tasks; ``predict(params, ids) -> outputs [T, B, V]``."""
    del step
    if not self.valid:
      return {}
    if getattr(self, "_predict", None) is not predict:  # Compile once.
      self._predict, self._argmax = predict, _argmax(predict)
    argmax = self._argmax
    counts = evaluate(lambda ids: argmax(params, ids), self.valid,
                      self.vocab, self.eval_batch_size, self.buckets)
    table = error_table(counts)
    results = {"valid/mean_error": table["mean_error"],
               "valid/failed_tasks": float(table["failed_tasks"])}
    results.update({f"valid/task{t}": e
                    for t, e in table["per_task"].items()})
    return results


def _argmax(predict: Callable) -> Callable:
  return jax.jit(lambda params, ids: jnp.argmax(predict(params, ids), -1))


def one_hot_inputs(apply_fn: Callable, vocab_size: int) -> Callable:
  """``apply(..., ids [T, B])`` for a model that takes one-hot inputs.

  The last argument is one-hot encoded, the others passed on: ``apply(params,
  ids)``, ``init(rng, ids)`` and ``train_apply(params, rng, ids)`` alike.
  """

  def apply(*args):
    *head, ids = args
    # float32 also when x64 is on (the tests): the parameters are.
    return apply_fn(*head, jax.nn.one_hot(ids, vocab_size, dtype=jnp.float32))

  return apply


def evaluate(predict: Callable, stories: Sequence[Story], vocab: Vocabulary,
             batch_size: int = 32,
             buckets: Sequence[int] = BUCKETS) -> Dict[int, Tuple[int, int]]:
  """``{task: (wrong questions, questions)}`` over ``stories``.

  Args:
    predict: ``predict(ids [T, B]) -> predicted ids [T, B]``.
  """
  encoded = [encode(s, vocab) for s in stories]
  by_bucket: Dict[int, List[EncodedStory]] = {}
  for story in encoded:
    by_bucket.setdefault(bucket_of(len(story.inputs), buckets),
                         []).append(story)
  counts: Dict[int, List[int]] = {}
  for bucket, group in sorted(by_bucket.items()):
    for start in range(0, len(group), batch_size):
      chunk = group[start:start + batch_size]
      batch = pad_batch(chunk, bucket, batch_size)
      predicted = np.asarray(predict(batch.inputs))
      for b, story in enumerate(chunk):
        n = len(story.inputs)
        right = predicted[:n, b] == story.targets
        steps = story.questions >= 0
        wrong = set(story.questions[steps & ~right].tolist())
        total = int(story.questions.max()) + 1 if steps.any() else 0
        tally = counts.setdefault(story.task, [0, 0])
        tally[0] += len(wrong)
        tally[1] += total
  return {task: (w, n) for task, (w, n) in sorted(counts.items())}


def partial_tasks(stories: Sequence[Story], share: float = 0.9) -> List[int]:
  """Tasks whose stories hold fewer than ``share`` of the most questions.

  In the published en-10k set every task has 10,000 training questions
  but task 3, which has 1,925: that task is trained on partial data. This
  is computed from the stories given, not assumed.
  """
  questions: Dict[int, int] = {}
  for story in stories:
    questions[story.task] = questions.get(story.task, 0) + (
        story.num_questions)
  if not questions:
    return []
  most = max(questions.values())
  return sorted(t for t, n in questions.items() if n < share * most)


def error_table(counts: Dict[int, Tuple[int, int]],
                partial: Sequence[int] = ()) -> Dict:
  """Per-task error (%), mean error and failed tasks, beside the paper's.

  ``partial``: tasks trained on partial data (see :func:`partial_tasks`),
  so marked in :func:`markdown_table`.
  """
  per_task = {task: 100.0 * wrong / max(total, 1)
              for task, (wrong, total) in counts.items()}
  errors = list(per_task.values())
  return {
      "per_task": per_task,
      "questions": {task: total for task, (_, total) in counts.items()},
      "mean_error": float(np.mean(errors)) if errors else float("nan"),
      "failed_tasks": int(sum(e > FAILED_ABOVE for e in errors)),
      "partial": sorted(int(t) for t in partial),
  }


def members_table(tables: Sequence[Dict]) -> Dict:
  """Several runs' :func:`error_table` results (a sweep's members) as one:
  per task and for the mean error and failed tasks the mean and s.d.
  (``n - 1``) over members, each member's failed tasks and the best member
  (lowest mean error), as Extended Data Table 1 reports 20 runs."""
  if not tables:
    raise ValueError("no member tables")
  tasks = sorted({t for table in tables for t in table["per_task"]})

  def stats(values):
    xs = np.asarray(values, np.float64)
    return float(xs.mean()), float(xs.std(ddof=1)) if len(xs) > 1 else 0.0

  per_task, per_task_sd = {}, {}
  for task in tasks:
    per_task[task], per_task_sd[task] = stats(
        [table["per_task"][task] for table in tables
         if task in table["per_task"]])
  mean_error, mean_error_sd = stats([t["mean_error"] for t in tables])
  failed, failed_sd = stats([t["failed_tasks"] for t in tables])
  best = int(np.argmin([t["mean_error"] for t in tables]))
  return {
      "per_task": per_task, "per_task_sd": per_task_sd,
      "questions": dict(tables[0].get("questions", {})),
      "mean_error": mean_error, "mean_error_sd": mean_error_sd,
      "failed_tasks": failed, "failed_tasks_sd": failed_sd,
      "partial": list(tables[0].get("partial", [])),
      "members": [{"mean_error": t["mean_error"],
                   "failed_tasks": t["failed_tasks"]} for t in tables],
      "best_member": best, "best_per_task": dict(tables[best]["per_task"]),
  }


def table_from_metrics(results: Dict[str, float],
                       prefix: str = "valid/") -> Dict:
  """An :func:`error_table` back from a run's logged evaluation metrics
  (``valid/task1``, ..., ``valid/mean_error``, ``valid/failed_tasks``);
  the question counts are not logged, so none."""
  per_task = {int(k[len(prefix) + 4:]): float(v) for k, v in results.items()
              if k.startswith(prefix + "task")}
  if not per_task:
    raise ValueError("no per-task bAbI errors among the metrics")
  errors = list(per_task.values())
  return {"per_task": dict(sorted(per_task.items())), "questions": {},
          "mean_error": float(results.get(prefix + "mean_error",
                                          np.mean(errors))),
          "failed_tasks": int(results.get(
              prefix + "failed_tasks", sum(e > FAILED_ABOVE for e in errors))),
          "partial": []}


def markdown_table(table: Dict, split: str, kind: str = "dnc") -> str:
  """Extended Data Table 1's layout: task, error, the paper's DNC1 mean.

  For an NTM run (``kind="ntm"``) a column of the paper's NTM beside it:
  its per-task means where known (else "-"), its mean error and failed
  tasks (mean +- s.d. of 20 runs) and its best run. For a sweep's
  :func:`members_table` the errors are mean ± s.d. over the members,
  beside the best member's, and each member's failed tasks follow.
  """
  ntm = kind == "ntm"
  members = table.get("members")
  n = len(members) if members else 0
  sd = table.get("per_task_sd", {})

  def cell(value, spread):
    return f"{value:.1f}" if not members else f"{value:.1f} ± {spread:.1f}"

  title = (f"{split} error % (mean ± s.d., {n} members) | best member %"
           if members else f"{split} error %")
  lines = [f"| task | {title} | questions | paper DNC1 mean % |"
           + (" paper NTM mean % |" if ntm else ""),
           "|---|---|---|---|" + ("---|" if members else "")
           + ("---|" if ntm else "")]
  for task, error in table["per_task"].items():
    note = " (partial data)" if task in table.get("partial", ()) else ""
    best = (f" {table['best_per_task'].get(task, float('nan')):.1f} |"
            if members else "")
    row = (f"| {task}{note} | {cell(error, sd.get(task, 0.0))} |{best} "
           f"{table['questions'].get(task, '-')} "
           f"| {PAPER_DNC1_MEAN.get(task, float('nan')):.1f} |")
    if ntm:
      paper = PAPER_NTM_MEAN.get(task)
      row += f" {'-' if paper is None else f'{paper:.1f}'} |"
    lines.append(row)
  mean, spread = PAPER_NTM_MEAN_ERROR
  best = (f" {members[table['best_member']]['mean_error']:.1f} (member "
          f"{table['best_member']}) |" if members else "")
  lines.append(f"| **mean** | **"
               f"{cell(table['mean_error'], table.get('mean_error_sd', 0))}"
               f"** |{best} | "
               f"{PAPER_DNC1_MEAN_CELL} |"
               + (f" {mean} ± {spread} (best run "
                  f"{PAPER_NTM_BEST_MEAN_ERROR}) |" if ntm else ""))
  failed, spread = PAPER_NTM_FAILED
  failed_cell = (f"{table['failed_tasks']}" if not members else
                 cell(table["failed_tasks"], table["failed_tasks_sd"]))
  best = (f" {members[table['best_member']]['failed_tasks']} |"
          if members else "")
  lines.append(f"| **failed (> {FAILED_ABOVE:g}%)** | "
               f"**{failed_cell}** |{best} | {PAPER_DNC1_FAILED_CELL} |"
               + (f" {failed} ± {spread} |" if ntm else ""))
  if members:
    lines.append("")
    lines.append("failed tasks per member: " + ", ".join(
        f"{m}: {member['failed_tasks']}" for m, member in enumerate(members)))
  return "\n".join(lines)


# Presets: Extended Data Table 2. ``dnc1`` (LSTM 256, memory 256 x 64, 4
# read heads), ``dnc2`` (256 x 32, 8 read heads), ``lstm`` (the LSTM-only
# baseline, 512 units), ``ntm`` (the NTM column: LSTM 256, memory 256 x 64,
# 4 read heads; one write head and shifts -1..+1, which the table does not
# give); RMSProp 1e-4 with momentum 0.9; the DNC's controller gradients
# clipped to +-10 (the NTM has no such setting).
_BABI_OPTIMIZER = dict(name="rmsprop", learning_rate=1e-4, momentum=0.9,
                       max_grad_norm=50.0)
_BABI_LOOP = dict(steps=500_000, batch_size=16, seed=0, log_every=50,
                  eval_every=2000, checkpoint_every=500, patience=20)
_BABI_TASK = dict(data_dir=None, tasks=None, valid_fraction=0.1,
                  eval_stories=200, remat_chunk=None)
_RSDNC_MODEL = dict(controller="lstm", hidden_size=172, memory_size=128,
                    word_size=64, num_reads=4, num_writes=1,
                    clip_value=20.0, controller_grad_clip=10.0,
                    use_temporal_links=False, controller_layer_norm=True,
                    interface_layer_norm=True, bypass_dropout=0.1)
PRESETS: Dict[str, Dict[str, Any]] = {
    "dnc1": {"kind": "dnc", "task": _BABI_TASK,
             "model": dict(controller="lstm", hidden_size=256,
                           memory_size=256, word_size=64, num_reads=4,
                           num_writes=1, clip_value=20.0,
                           controller_grad_clip=10.0),
             "optimizer": _BABI_OPTIMIZER, "loop": _BABI_LOOP},
    "dnc2": {"kind": "dnc", "task": _BABI_TASK,
             "model": dict(controller="lstm", hidden_size=256,
                           memory_size=256, word_size=32, num_reads=8,
                           num_writes=1, clip_value=20.0,
                           controller_grad_clip=10.0),
             "optimizer": _BABI_OPTIMIZER, "loop": _BABI_LOOP},
    "lstm": {"kind": "lstm", "task": _BABI_TASK,
             "model": dict(hidden_size=512),
             "optimizer": _BABI_OPTIMIZER, "loop": _BABI_LOOP},
    "ntm": {"kind": "ntm", "task": _BABI_TASK,
            "model": dict(controller="lstm", hidden_size=256,
                          memory_size=256, word_size=64, num_reads=4,
                          num_writes=1, clip_value=20.0, shift_range=1,
                          initial_weighting="one_hot",
                          weighting_grad_clip=10.0),
            "optimizer": _BABI_OPTIMIZER, "loop": _BABI_LOOP},
    # The later fixes (docs/maths.md section 8) on dnc1's sizes and recipe,
    # so a run differs from dnc1 only by them. DNC-MD: masked content
    # lookup and de-allocation (Csordas & Schmidhuber 2019; their bAbI
    # sizes equal dnc1's); DNC-MSD adds link-distribution sharpness.
    "dnc_md": {"kind": "dnc", "task": _BABI_TASK,
               "model": dict(controller="lstm", hidden_size=256,
                             memory_size=256, word_size=64, num_reads=4,
                             num_writes=1, clip_value=20.0,
                             controller_grad_clip=10.0,
                             content_masking=True, deallocation=True),
               "optimizer": _BABI_OPTIMIZER, "loop": _BABI_LOOP},
    "dnc_msd": {"kind": "dnc", "task": _BABI_TASK,
                "model": dict(controller="lstm", hidden_size=256,
                              memory_size=256, word_size=64, num_reads=4,
                              num_writes=1, clip_value=20.0,
                              controller_grad_clip=10.0,
                              content_masking=True, deallocation=True,
                              link_sharpness=True),
                "optimizer": _BABI_OPTIMIZER, "loop": _BABI_LOOP},
    # Franke et al. 2018's robust DNC (their bAbI-all configuration: LSTM
    # 172 with layer normalisation, memory 128 x 64, 4 read heads, no
    # temporal link, normalised interface, bypass dropout), unidirectional.
    # Their bypass dropout keeps 0.9 of the units ("bypass_dropout": 0.9, a
    # keep probability, in their ADNC configs), so the rate here is 0.1; the
    # trainer draws the masks from each step's key (the same on resume) and
    # evaluates without dropout. Our recipe (dnc1's optimiser) rather than
    # their RMSProp 3e-5 at batch 32.
    "rsdnc": {"kind": "dnc", "task": _BABI_TASK,
              "model": _RSDNC_MODEL,
              "optimizer": _BABI_OPTIMIZER, "loop": _BABI_LOOP},
    # Their BrsDNC: rsdnc's forward DNC plus a backward LSTM over the whole
    # story and questions, of the controller's size and layer norm (172,
    # as both come from one controller configuration in their code); its
    # state joins the forward controller's output on the way to the memory
    # interface and the (dropped-out) bypass (experiments/bidirectional.py,
    # docs/maths.md section 8.8). Their best bAbI-all model (3.2% mean).
    "brsdnc": {"kind": "brsdnc", "task": _BABI_TASK,
               "model": _RSDNC_MODEL,
               "optimizer": _BABI_OPTIMIZER, "loop": _BABI_LOOP},
}


@dataclasses.dataclass(frozen=True)
class BabiConfig:
  """The bAbI task's settings (the ``task`` section of a bAbI preset).

  Attributes:
    data_dir: folder with qaN_*_train.txt (and _test.txt).
    tasks: comma-separated task numbers (default: all).
    valid_fraction: share of each task's stories kept for validation.
    eval_stories: validation stories per task at each evaluation (0: all).
    remat_chunk: recompute chunks of this many steps in the backward pass.
    validation: hold out stories, evaluate, keep the best and stop early.
  """

  data_dir: Optional[str] = None
  tasks: Optional[str] = None
  valid_fraction: float = 0.1
  eval_stories: int = 200
  remat_chunk: Optional[int] = None
  validation: bool = True


def parse_tasks(text) -> Optional[List[int]]:
  """``"1,2,3"`` (or a list) as task numbers 1 to 20; ``None``: all."""
  if text is None or isinstance(text, list):
    return text
  try:
    tasks = [int(t) for t in str(text).split(",") if t.strip()]
  except ValueError:
    raise ValueError(f"--tasks must be comma-separated numbers 1 to 20, got "
                     f"{text!r}") from None
  bad = [t for t in tasks if not 1 <= t <= 20]
  if bad or not tasks:
    raise ValueError(f"--tasks must be comma-separated numbers 1 to 20, got "
                     f"{text!r}")
  return tasks


def validation_subset(stories, per_task: int, seed: int):
  """Up to ``per_task`` validation stories of each task (fixed choice)."""
  if per_task <= 0:
    return list(stories)
  chosen = []
  for task in sorted({s.task for s in stories}):
    of_task = [s for s in stories if s.task == task]
    rng = np.random.default_rng([seed, task, 7])
    keep = sorted(rng.permutation(len(of_task))[:per_task].tolist())
    chosen += [of_task[i] for i in keep]
  return chosen


def make_predict(apply_fn):
  """``predict(params, ids [T, B]) -> predicted ids [T, B]``, jit-compiled."""
  @jax.jit
  def predict(params, ids):
    return jnp.argmax(apply_fn(params, ids), -1)
  return predict
