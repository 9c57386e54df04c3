"""A jit-compiled optax training loop with evaluation, checkpoints and resume.

The loop is task-agnostic: a task follows :mod:`experiments.tasks.base`
(``sample(rng, batch_size)``, ``loss(logits, batch)``, ``metrics(logits,
batch)``, and optionally ``evaluate``, a curriculum and its own closed-loop
``make_train_step``); the model is any ``apply(params, inputs) -> logits``
(with dropout, also ``train_apply(params, rng, inputs)``, trained with each
step's key: :func:`build_step`).
:func:`train` is assembled from parts that each do one thing:
:class:`RunFolder` (files), :func:`_initial_state` and
:func:`resume_state` (fresh or restored state, via
:func:`checkpoint_template`, the one template), :func:`build_step`,
:func:`_evaluate` (evaluation, best parameters, curriculum),
:class:`_Checkpointing`, :class:`_Progress` (logging) and
:class:`_StopRequest` (Ctrl-C and SIGTERM). The batch of step ``s`` is drawn from
``np.random.default_rng([seed, s])``, so a resumed run sees exactly the data
stream it would have seen uninterrupted.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import pathlib
import signal
import time
from typing import (Any, Callable, Dict, List, NamedTuple, Optional,
                    Sequence, Tuple)

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from experiments.checkpoints import (Checkpointer, CheckpointError,
                                     describe_differences)
from experiments.tasks.base import global_norm

OPTIMIZERS = ("rmsprop", "adam")


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
  """Gradient clipping by global norm, then RMSProp or Adam.

  The defaults are the original release's: TF1 RMSProp (decay 0.9, the
  squared-gradient average starting at one, ε inside the square root)
  after clipping the global norm to 50.
  """

  name: str = "rmsprop"
  learning_rate: float = 1e-4
  max_grad_norm: float = 50.0
  decay: float = 0.9
  epsilon: float = 1e-10
  momentum: float = 0.0

  def __post_init__(self):
    if self.name not in OPTIMIZERS:
      raise ValueError(f"optimizer must be one of {OPTIMIZERS}, "
                       f"got {self.name!r}")
    for field in ("learning_rate", "max_grad_norm", "epsilon"):
      value = getattr(self, field)
      if not (isinstance(value, (int, float)) and value > 0):
        raise ValueError(f"{field} must be a number > 0, got {value!r}")
    if not 0 <= self.decay < 1:
      raise ValueError(f"decay must be in [0, 1), got {self.decay}")
    if not 0 <= self.momentum < 1:
      raise ValueError(f"momentum must be in [0, 1), got {self.momentum}")


def make_optimizer(config: OptimizerConfig) -> optax.GradientTransformation:
  """The optax chain ``config`` describes."""
  if config.name == "rmsprop":
    update = optax.rmsprop(config.learning_rate, decay=config.decay,
                           eps=config.epsilon, initial_scale=1.0,
                           eps_in_sqrt=True,
                           momentum=config.momentum or None)
  else:
    update = optax.adam(config.learning_rate, eps=config.epsilon)
  return optax.chain(optax.clip_by_global_norm(config.max_grad_norm), update)


@dataclasses.dataclass(frozen=True)
class LoopConfig:
  """How long to train and how often to log, evaluate and checkpoint.

  Attributes:
    steps: total training steps (a resumed run stops at the same total).
    batch_size: examples per step.
    seed: seeds the parameters and the data stream.
    log_every: steps between metric lines (a host sync each time).
    eval_every: steps between evaluations (0: only at the end).
    checkpoint_every: steps between checkpoints (also written at the end and
      on Ctrl-C or SIGTERM).
    select_metric: an evaluation metric, lower is better, that picks the
      best parameters (saved under ``best/``); ``None`` keeps no best.
    patience: stop after this many evaluations without a better
      ``select_metric`` (early stopping); ``None`` never stops early.
    stop_below: ``(metric, value)``: stop once an evaluation gives
      ``metric < value`` (e.g. ``("valid/bit_errors", 0.5)``).
    data_parallel: split each batch over all local devices.
  """

  steps: int
  batch_size: int
  seed: int = 0
  log_every: int = 100
  eval_every: int = 1000
  checkpoint_every: int = 1000
  select_metric: Optional[str] = None
  patience: Optional[int] = None
  stop_below: Optional[Tuple[str, float]] = None
  data_parallel: bool = False

  def __post_init__(self):
    for field in ("steps", "batch_size", "log_every", "checkpoint_every"):
      value = getattr(self, field)
      if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{field} must be an int >= 1, got {value!r}")
    if not isinstance(self.eval_every, int) or self.eval_every < 0:
      raise ValueError(f"eval_every must be an int >= 0, got "
                       f"{self.eval_every!r}")
    if self.patience is not None:
      if self.select_metric is None:
        raise ValueError("patience needs select_metric")
      if not isinstance(self.patience, int) or self.patience < 1:
        raise ValueError(f"patience must be an int >= 1, got "
                         f"{self.patience!r}")


class TrainState(NamedTuple):
  """What a step updates: parameters and optimiser state."""

  params: Any
  opt_state: Any


def make_train_step(apply_fn: Callable, task, optimizer,
                    axis_name: Optional[str] = None, *,
                    stochastic: bool = False) -> Callable:
  """``step(state, batch) -> (state, metrics)``, to be jit-compiled.

  ``metrics`` holds the task's metrics on the batch, ``loss`` and
  ``grad_norm`` (before clipping). With ``axis_name`` the step runs on one
  shard of the batch per device (inside ``shard_map``): gradients and
  metrics are averaged over ``axis_name`` before the (replicated) update.

  With ``stochastic=True`` (a model with dropout) ``apply_fn`` is
  ``apply_fn(params, rng, inputs)`` and the step is ``step(state, batch,
  rng)``; with ``axis_name`` each device folds its index into ``rng``, so
  the shards draw different masks. Without it the traced program is the
  one it always was.
  """

  def step(state: TrainState, batch, rng=None):
    def objective(params):
      if stochastic:
        key = rng
        if axis_name is not None:
          key = jax.random.fold_in(key, jax.lax.axis_index(axis_name))
        logits = apply_fn(params, key, batch.inputs)
      else:
        logits = apply_fn(params, batch.inputs)
      return task.loss(logits, batch), logits

    (loss, logits), grads = jax.value_and_grad(objective, has_aux=True)(
        state.params)
    metrics = dict(task.metrics(logits, batch), loss=loss)
    if axis_name is not None:
      grads, metrics = jax.lax.pmean((grads, metrics), axis_name)
    updates, opt_state = optimizer.update(grads, state.opt_state,
                                          state.params)
    params = optax.apply_updates(state.params, updates)
    metrics["grad_norm"] = global_norm(grads)
    return TrainState(params, opt_state), metrics

  return step


def data_parallel_step(step: Callable, mesh: Mesh,
                       stochastic: bool = False) -> Callable:
  """``step`` (made with ``axis_name="data"``) over ``mesh``'s devices.

  The state is replicated; batches, time-major ``[T, B, ...]``, are split
  along ``B``. Each device runs ``step`` (the fused CPU kernel included) on
  its shard; the means over devices make the update the same everywhere.
  ``stochastic``: ``step`` takes a third argument, the (replicated) rng.
  """
  in_specs = (PartitionSpec(), PartitionSpec(None, "data"))
  if stochastic:
    in_specs += (PartitionSpec(),)
  return jax.shard_map(step, mesh=mesh, in_specs=in_specs,
                       out_specs=(PartitionSpec(), PartitionSpec()),
                       check_vma=False)


def initial_train_state(init_fn: Callable, optimizer_config: OptimizerConfig,
                        inputs, seed: int) -> TrainState:
  """Fresh parameters (seeded) and the optimiser state for them."""
  params = init_fn(jax.random.PRNGKey(seed), inputs)
  return TrainState(params, make_optimizer(optimizer_config).init(params))


class _StopRequest:
  """Turns Ctrl-C and SIGTERM into a flag the loop checks between steps.

  Stopping between steps, never inside one, keeps the state consistent for
  the final checkpoint.
  """

  def __init__(self):
    self.requested = False

  @contextlib.contextmanager
  def installed(self):
    def handler(signum, frame):
      del frame
      if self.requested:  # A second Ctrl-C stops at once.
        raise KeyboardInterrupt
      self.requested = True
      print(f"\nsignal {signum}: stopping after this step and saving a "
            "checkpoint (again to abort)", flush=True)

    previous = {}
    try:
      for sig in (signal.SIGINT, signal.SIGTERM):
        previous[sig] = signal.signal(sig, handler)
    except ValueError:  # Not the main thread: no handlers, no flag.
      pass
    try:
      yield self
    finally:
      for sig, old in previous.items():
        signal.signal(sig, old)


def data_mesh(batch_size: int) -> Mesh:
  """A one-axis mesh (``"data"``) over all local devices."""
  devices = jax.local_devices()
  if batch_size % len(devices):
    raise ValueError(f"batch_size {batch_size} must divide evenly over the "
                     f"{len(devices)} local devices for data parallelism")
  return Mesh(np.array(devices), ("data",))


class TrainingDiverged(RuntimeError):
  """The loss, the gradients or the parameters stopped being finite.

  Raised by the training loops at the first metric line (every
  ``log_every`` steps) or checkpoint, evaluation or final save that sees a
  NaN or an infinity; nothing non-finite is ever written as a checkpoint,
  so the newest checkpoint of the run folder predates the divergence.
  """


def check_finite_metrics(metrics: Dict[str, Any], step: int,
                         where: str = ""):
  """``TrainingDiverged`` unless ``loss`` and ``grad_norm`` are finite.

  Args:
    metrics: host values (scalars, or one per sweep member).
    step: the step they were measured at, for the message.
    where: what the run folder holds, for the message.
  """
  bad = {name: np.asarray(metrics[name]) for name in ("loss", "grad_norm")
         if name in metrics}
  bad = {name: value for name, value in bad.items()
         if not np.all(np.isfinite(value))}
  if bad:
    shown = ", ".join(f"{name} {value.tolist()}" for name, value in
                      bad.items())
    raise TrainingDiverged(f"training diverged by step {step}: {shown}. "
                           f"{_DIVERGED_ADVICE.format(where=where)}")


def check_finite_params(params, step: int, where: str = "",
                        to_host: Callable = jax.device_get):
  """``TrainingDiverged`` unless every parameter is finite (one host
  sync); called before anything is saved or evaluated. ``to_host``
  fetches the tree of per-leaf flags (a sweep's gathers every process's)."""
  finite = jax.tree.map(lambda x: jnp.all(jnp.isfinite(x)), params)
  leaves = jax.tree_util.tree_leaves_with_path(to_host(finite))
  bad = [jax.tree_util.keystr(path) for path, ok in leaves if not ok]
  if bad:
    raise TrainingDiverged(
        f"training diverged by step {step}: parameters not finite "
        f"({', '.join(bad[:3])}{', ...' if len(bad) > 3 else ''}); not "
        f"saved. {_DIVERGED_ADVICE.format(where=where)}")


_DIVERGED_ADVICE = (
    "Nothing from the diverged steps was saved: the newest checkpoint"
    "{where} was written before them. Resume from it with a smaller "
    "learning rate or tighter gradient clipping, or delete it to go back "
    "further.")


def _host(metrics: Dict[str, Any]) -> Dict[str, float]:
  return {k: float(v) for k, v in jax.device_get(metrics).items()}


class MetricsLog:
  """Appends one JSON object a line to ``path``."""

  def __init__(self, path: pathlib.Path):
    self.path = path

  def write(self, **record):
    with self.path.open("a") as f:
      f.write(json.dumps(record) + "\n")


def checkpoint_template(init_fn: Callable,
                        optimizer_config: OptimizerConfig,
                        inputs) -> TrainState:
  """The state a checkpoint is restored into: the one place it is built.

  The shapes, not the values, matter, so the seed is fixed; training,
  ``dnc-plot`` and ``dnc-babi-eval`` all restore through this.
  """
  return initial_train_state(init_fn, optimizer_config, inputs, seed=0)


def load_params(run_dir, init_fn: Callable,
                optimizer_config: OptimizerConfig, inputs,
                use_best: bool = False, step: Optional[int] = None
                ) -> Tuple[Any, Dict[str, Any], str]:
  """``(params, record, which)`` of a run folder's best or latest checkpoint.

  ``best/`` is used when ``use_best`` and the run kept one; else the
  newest intact checkpoint under ``checkpoints/`` (or ``step``).
  """
  run_dir = pathlib.Path(run_dir)
  best = run_dir / "best"
  if use_best and step is None and best.is_dir() and any(
      p.name.isdigit() for p in best.iterdir()):
    checkpointer = Checkpointer(best, max_to_keep=1, create=False)
    template = checkpoint_template(init_fn, optimizer_config, inputs)
    params, record = checkpointer.restore(template.params)
    checkpointer.close()
    return params, record, f"best (step {record['step']})"
  checkpointer = Checkpointer(run_dir / "checkpoints", create=False)
  template = checkpoint_template(init_fn, optimizer_config, inputs)
  state, record = checkpointer.restore(template, step)
  checkpointer.close()
  return state.params, record, f"latest (step {record['step']})"


class RunFolder:
  """A run's files: checkpoints, the best parameters, ``metrics.jsonl``.

  Creating one checks that ``out_dir`` can be written (a one-line
  :class:`CheckpointError` otherwise).
  """

  def __init__(self, out_dir, keep_best: bool):
    self.path = pathlib.Path(out_dir)
    make_run_folder(self.path)
    self.checkpoints = Checkpointer(self.path / "checkpoints")
    self.best = (Checkpointer(self.path / "best", max_to_keep=1)
                 if keep_best else None)
    self.log = MetricsLog(self.path / "metrics.jsonl")

  def close(self):
    self.checkpoints.close()
    if self.best is not None:
      self.best.close()


def make_run_folder(path: pathlib.Path):
  """Creates ``path`` or raises a one-line :class:`CheckpointError`."""
  try:
    path.mkdir(parents=True, exist_ok=True)
  except OSError as error:
    raise CheckpointError(f"cannot create the run folder {path}: "
                          f"{error.strerror or error}") from None
  if not os.access(path, os.W_OK):
    raise CheckpointError(f"the run folder {path} is not writable")


class _BestTracker:
  """Picks the best parameters by ``select_metric`` and counts patience."""

  def __init__(self, metric: Optional[str], state: Optional[Dict] = None):
    self.metric = metric
    self.state = state or {"value": None, "step": None, "evals_since": 0}

  def update(self, results: Dict[str, float], step: int) -> bool:
    """Whether ``results`` are the best so far (then ``step`` is kept)."""
    if self.metric is None:
      return False
    if self.metric not in results:
      raise KeyError(f"select_metric {self.metric!r} is not among the "
                     f"evaluation's metrics {sorted(results)}")
    value = results[self.metric]
    if self.state["value"] is None or value < self.state["value"]:
      self.state.update(value=value, step=step, evals_since=0)
      return True
    self.state["evals_since"] += 1
    return False

  def patience_spent(self, patience: Optional[int]) -> bool:
    return patience is not None and self.state["evals_since"] >= patience


def build_step(model, task, optimizer, loop_config: LoopConfig,
               mesh: Optional[Mesh]) -> Callable:
  """``step(state, batch, step_number) -> (state, metrics)``, jit-compiled.

  The task's own (closed-loop) step when it has one, else the open-loop
  step of :func:`make_train_step`, over ``mesh`` when data-parallel.

  Step ``s`` gets the key ``fold_in(PRNGKey(seed), s)``, a function of the
  step alone, so a resumed run draws the same keys as the uninterrupted
  one: a closed-loop step takes it for its episodes; a model with a
  ``train_apply`` (dropout) is trained through it with that key for its
  masks. Evaluation always uses ``model.apply``; a model without
  ``train_apply`` compiles the same step as before keys existed.
  """
  own = getattr(task, "make_train_step", None)
  task_step = own(model, optimizer) if own is not None else None
  base_key = jax.random.PRNGKey(loop_config.seed)
  if task_step is not None:
    if mesh is not None:
      raise ValueError(f"task {getattr(task, 'name', task)!r} brings its "
                       "own step, which does not run data-parallel")

    def closed_loop(state, batch, step_number):
      key = jax.random.fold_in(base_key, step_number)
      state, metrics = task_step(state, batch, key)
      if "grad_norm" not in metrics:
        metrics = dict(metrics, grad_norm=jnp.float32(0))
      return state, metrics

    return jax.jit(closed_loop, donate_argnums=0)
  train_apply = getattr(model, "train_apply", None)
  stochastic = train_apply is not None
  apply_fn = train_apply if stochastic else model.apply
  if mesh is None:
    step_fn = make_train_step(apply_fn, task, optimizer,
                              stochastic=stochastic)
  else:
    step_fn = data_parallel_step(
        make_train_step(apply_fn, task, optimizer, axis_name="data",
                        stochastic=stochastic), mesh, stochastic)
  if stochastic:
    def with_key(state, batch, step_number):
      return step_fn(state, batch, jax.random.fold_in(base_key, step_number))

    return jax.jit(with_key, donate_argnums=0)
  jitted = jax.jit(step_fn, donate_argnums=0)
  return lambda state, batch, step_number: jitted(state, batch)


def _curriculum(task) -> Dict[str, Any]:
  get = getattr(task, "curriculum_state", None)
  return dict(get()) if get is not None else {}


# Settings a resumed run may change when asked (``may_change``): none of
# them shapes the parameters or the optimiser's state. The entropy cost and
# λ are the reinforcement-learning task's (Mini-SHRDLU): a lower entropy cost
# late in a run sharpens a policy kept broad for exploration early on; a
# higher λ lengthens the advantage's reach past a value network that has not
# yet learnt what the policy must.
CHANGEABLE_ON_RESUME = ("optimizer.learning_rate", "optimizer.max_grad_norm",
                        "task.entropy_cost", "task.lam")


def _check_record(checkpointer: Checkpointer, record: Dict[str, Any],
                  run_record: Dict[str, Any],
                  may_change: Sequence[str] = ()) -> List[str]:
  """Raises unless the checkpoint's run record matches ``run_record``
  (``loop.steps`` and the ``may_change`` fields aside); returns the
  differences in those fields (``["optimizer.learning_rate: saved 0.0001,
  now 0.0003"]``)."""
  differences = describe_differences(
      _without_steps(record.get("run", {})), _without_steps(run_record))
  allowed = [d for d in differences if d.split(":")[0] in may_change]
  refused = [d for d in differences if d not in allowed]
  if refused:
    fields = [d.split(":")[0] for d in refused]
    hint = ""
    if all(field in CHANGEABLE_ON_RESUME for field in fields):
      hint = " (to go on at the new value: {})".format(" ".join(
          f"--allow-change {field.split('.', 1)[1]}" for field in fields))
    raise CheckpointError(
        "the checkpoint in {} belongs to a different run: {}{}".format(
            checkpointer.directory, "; ".join(refused), hint))
  return allowed


def resume_state(checkpointer: Checkpointer, template: TrainState,
                 run_record: Dict[str, Any],
                 may_change: Sequence[str] = ()) -> Tuple[TrainState, Dict]:
  """The newest intact checkpoint's ``(state, record)``.

  A corrupt checkpoint is skipped with a warning naming it; the run record
  must match ``run_record`` (``loop.steps`` and the ``may_change`` fields
  aside; the changes made are listed in ``record["changed"]``).

  Raises:
    CheckpointError: no intact checkpoint, or one of another run.
  """
  failures = []
  for step in checkpointer.all_steps()[::-1]:
    try:
      record = checkpointer.read_record(step)
    except CheckpointError as error:
      failures.append(str(error))
      print(f"warning: {error}; trying an older one", flush=True)
      continue
    changed = _check_record(checkpointer, record, run_record, may_change)
    try:
      state, record = checkpointer.restore(template, step)
    except CheckpointError as error:
      failures.append(str(error))
      print(f"warning: {error}; trying an older one", flush=True)
      continue
    return state, dict(record, changed=changed)
  raise CheckpointError(f"no intact checkpoint in {checkpointer.directory}: "
                        + "; ".join(failures))


class _Progress:
  """A tqdm bar started after the first (compiling) step, so its rate and
  ETA count training only."""

  def __init__(self, total: int, enabled: bool):
    self.total, self.enabled, self.bar = total, enabled, None

  def start(self, initial: int):
    from tqdm import tqdm  # Imported late: only the loop needs it.
    self.bar = tqdm(total=self.total, initial=initial,
                    disable=not self.enabled, dynamic_ncols=True)

  def update(self, metrics: Optional[Dict[str, float]] = None):
    if self.bar is not None:
      self.bar.update(1)
      if metrics:
        self.bar.set_postfix({k: f"{v:.3g}" for k, v in metrics.items()
                              if k != "grad_norm"})

  def write(self, line: str):
    if self.bar is not None:
      self.bar.write(line)
    else:
      print(line, flush=True)

  def close(self):
    if self.bar is not None:
      self.bar.close()


def train(*, init_fn: Callable, apply_fn: Callable, task,
          optimizer_config: OptimizerConfig, loop_config: LoopConfig,
          out_dir, run_record: Dict[str, Any],
          evaluate: Optional[Callable[[Any], Dict[str, float]]] = None,
          resume: bool = False, progress: bool = True,
          stop_after: Optional[int] = None, model=None,
          may_change: Sequence[str] = (),
          on_start: Optional[Callable[[], None]] = None) -> Dict[str, Any]:
  """Trains, evaluates and checkpoints; returns the final summary.

  Args:
    init_fn: ``init_fn(rng, inputs) -> params``.
    apply_fn: ``apply_fn(params, inputs [T, B, X]) -> logits [T, B, Y]``.
    task: a :class:`experiments.tasks.base.Task` (at least ``sample``,
      ``loss`` and ``metrics``).
    optimizer_config, loop_config: see their classes.
    out_dir: run folder: ``checkpoints/``, ``best/``, ``metrics.jsonl``.
    run_record: the run's configuration as plain JSON data; saved with every
      checkpoint, and a resumed run must match it (``loop.steps`` aside).
    evaluate: ``evaluate(params) -> {name: value}``, run every
      ``eval_every`` steps and at the end; default: the task's
      ``evaluate`` if it has one.
    resume: continue from the newest intact checkpoint in ``out_dir``.
      Without it, a folder that already holds checkpoints is refused.
    progress: show a progress bar.
    stop_after: stop (and checkpoint) once this step is reached, as if
      interrupted; for tests and time-boxed sessions.
    model: an :class:`experiments.models.Model` (default: ``init_fn`` and
      ``apply_fn`` without a core) handed to a closed-loop task.
    may_change: fields of :data:`CHANGEABLE_ON_RESUME` that a resumed run
      may set differently from its checkpoint (e.g. a lower learning rate
      for a long run's later steps); each change is printed and logged as
      a ``change`` line of ``metrics.jsonl`` at the step it takes effect.
    on_start: called once the state is built (fresh, or resumed with its
      checkpoint's record checked), before the first step. The command
      lines write ``settings.json`` here, so a resume that the checkpoint
      refuses leaves the folder's settings as they were.
  Returns:
    ``{"step", "stopped", "train": last batch metrics, "eval": last
    evaluation, "best"}``.
  """
  from experiments.models import Model  # Late: models imports dnc_jax.
  unknown = sorted(set(may_change) - set(CHANGEABLE_ON_RESUME))
  if unknown:
    raise ValueError(f"may_change: {unknown} cannot change on resume; "
                     f"only {list(CHANGEABLE_ON_RESUME)} can")
  if may_change and not resume:
    raise ValueError("may_change applies to a resumed run (--resume)")
  model = model or Model(init_fn, apply_fn)
  folder = RunFolder(out_dir, keep_best=loop_config.select_metric is not None)
  mesh = (data_mesh(loop_config.batch_size) if loop_config.data_parallel
          else None)
  sample = _make_sampler(task, loop_config, mesh)
  run_record = json.loads(json.dumps(run_record))  # Plain JSON, as saved.
  state, start, best, changed = _initial_state(
      folder, init_fn, optimizer_config, loop_config, task, sample,
      run_record, resume, mesh, may_change)
  if on_start is not None:
    on_start()
  if changed:
    folder.log.write(kind="change", step=start, time=time.time(),
                     changed=changed)
    print(f"changed from step {start} on: " + "; ".join(changed), flush=True)
  train_step = build_step(model, task, make_optimizer(optimizer_config),
                          loop_config, mesh)
  evaluate = evaluate or _task_evaluate(task, model.apply)
  checkpoint = _Checkpointing(folder, run_record, best, task)
  try:
    state, step, stopped, last_train, last_eval = _run_steps(
        state, start, train_step, sample, loop_config, folder, checkpoint,
        evaluate, task, progress, stop_after)
  finally:
    folder.close()
  summary = {"step": step, "stopped": stopped, "train": last_train,
             "eval": last_eval, "best": best.state}
  (folder.path / "summary.json").write_text(json.dumps(summary, indent=2))
  return summary


def _make_sampler(task, loop_config: LoopConfig, mesh: Optional[Mesh]):
  """``sample(step) -> batch``: seeded by step, sharded when data-parallel."""

  def sample(step: int):
    rng = np.random.default_rng([loop_config.seed, step])
    batch = task.sample(rng, loop_config.batch_size)
    if mesh is not None:
      # Time-major [T, B, ...]: axis 1 is split over the devices.
      batch = jax.device_put(batch, NamedSharding(
          mesh, PartitionSpec(None, "data")))
    return batch

  return sample


def _initial_state(folder: RunFolder, init_fn, optimizer_config, loop_config,
                   task, sample, run_record, resume, mesh, may_change=()):
  """``(state, start step, best tracker, changed settings)``: fresh or from
  a checkpoint."""

  def replicate(tree):
    return tree if mesh is None else jax.device_put(
        tree, NamedSharding(mesh, PartitionSpec()))

  inputs = np.asarray(sample(0).inputs)
  state = initial_train_state(init_fn, optimizer_config, inputs,
                              loop_config.seed)
  best = _BestTracker(loop_config.select_metric)
  checkpointer = folder.checkpoints
  if checkpointer.latest_step() is None:
    if resume:
      print(f"no checkpoint in {checkpointer.directory}: starting afresh")
    return replicate(state), 0, best, []
  if not resume:
    raise CheckpointError(
        f"{checkpointer.directory} already holds checkpoints: pass "
        "resume=True (--resume) to continue that run, or use another "
        "output folder")
  state, saved = resume_state(checkpointer, state, run_record, may_change)
  restore = getattr(task, "restore_curriculum", None)
  if restore is not None:
    restore(saved.get("curriculum", {}))
  best = _BestTracker(loop_config.select_metric, saved.get("best"))
  print(f"resumed from step {saved['step']} of {checkpointer.directory}")
  return replicate(state), saved["step"], best, saved["changed"]


class _Checkpointing:
  """Writes the periodic, final and best checkpoints with the run record."""

  def __init__(self, folder: RunFolder, run_record, best: _BestTracker,
               task):
    self.folder, self.run_record, self.best, self.task = (
        folder, run_record, best, task)
    self.where = f" in {folder.checkpoints.directory}"

  def save(self, step: int, state: TrainState):
    check_finite_params(state.params, step, self.where)
    record = {"run": self.run_record, "best": self.best.state}
    curriculum = _curriculum(self.task)
    if curriculum:
      record["curriculum"] = curriculum
    self.folder.checkpoints.save(step, state, record)

  def save_best(self, step: int, state: TrainState, value: float):
    self.folder.best.save(step, state.params, {
        "run": self.run_record, "metric": self.best.metric, "value": value})


def _task_evaluate(task, apply_fn):
  """``evaluate(params)`` from the task's own ``evaluate``, if it has one."""
  if not hasattr(task, "evaluate"):
    return None
  predict = jax.jit(apply_fn)
  step_box = {"step": 0}

  def evaluate(params):
    return task.evaluate(predict, params, step_box["step"])

  evaluate.step_box = step_box
  return evaluate


def _evaluate(state, step, evaluate, folder: RunFolder,
              checkpoint: _Checkpointing, task) -> Dict[str, float]:
  """Runs ``evaluate``, logs it, keeps the best, lets the curriculum move."""
  if evaluate is not None and hasattr(evaluate, "step_box"):
    evaluate.step_box["step"] = step
  _slow_evaluation_hook()
  check_finite_params(state.params, step, checkpoint.where)
  results = evaluate(state.params) if evaluate else {}
  extra = {}
  curriculum = _curriculum(task)
  if curriculum:
    extra["curriculum"] = curriculum
  folder.log.write(kind="eval", step=step, time=time.time(), **results,
                   **extra)
  if checkpoint.best.update(results, step):
    checkpoint.save_best(step, state, results[checkpoint.best.metric])
  advance = getattr(task, "after_evaluation", None)
  if advance is not None:
    changed = advance(results)
    if changed:
      folder.log.write(kind="curriculum", step=step, time=time.time(),
                       **changed)
  return results


def _run_steps(state, start, train_step, sample, loop_config: LoopConfig,
               folder: RunFolder, checkpoint: _Checkpointing, evaluate, task,
               progress: bool, stop_after: Optional[int]):
  """The step loop; returns ``(state, step, stopped, train, eval)``."""
  stop = _StopRequest()
  bar = _Progress(loop_config.steps, progress)
  last_train, last_eval, stopped = {}, {}, None
  step = start
  with stop.installed():
    # A crash inside this block propagates without a final save: the state
    # may be half-donated, and the last periodic checkpoint stands.
    try:
      while step < loop_config.steps:
        state, metrics = train_step(state, sample(step), step)
        if step == start:  # The first step compiled: time the rest only.
          jax.block_until_ready(metrics)
          bar.start(start)
        step += 1
        logged = None
        if step % loop_config.log_every == 0 or step == loop_config.steps:
          logged = last_train = _host(metrics)
          folder.log.write(kind="train", step=step, time=time.time(),
                           **last_train)
          check_finite_metrics(last_train, step, checkpoint.where)
        bar.update(logged)
        fresh_eval = {}
        if (loop_config.eval_every and step % loop_config.eval_every == 0
            and step < loop_config.steps):
          fresh_eval = last_eval = _evaluate(state, step, evaluate, folder,
                                             checkpoint, task)
          bar.write(f"step {step}: " + ", ".join(
              f"{k} {v:.4g}" for k, v in last_eval.items()))
          if checkpoint.best.patience_spent(loop_config.patience):
            stopped = "early stopping"
        if step % loop_config.checkpoint_every == 0:
          checkpoint.save(step, state)
        _fault_point(step)
        if stop.requested:
          stopped = "interrupted"
        elif stop_after is not None and step >= stop_after:
          stopped = "stop_after"
        elif _reached(loop_config.stop_below, fresh_eval):
          stopped = "target reached"
        if stopped:
          break
    finally:
      bar.close()
    if step > start and step % loop_config.checkpoint_every:
      checkpoint.save(step, state)
    if stopped is None:  # Ctrl-C here still lets the evaluation finish.
      last_eval = _evaluate(state, step, evaluate, folder, checkpoint, task)
  return state, step, stopped, last_train, last_eval


def _slow_evaluation_hook():
  """Test hook: ``DNC_TEST_EVAL_SLEEP=s`` says so and sleeps in evaluations
  (to send Ctrl-C into one)."""
  delay = os.environ.get("DNC_TEST_EVAL_SLEEP")
  if delay:
    print("evaluation started", flush=True)
    time.sleep(float(delay))


def _fault_point(step: int):
  """Test hook: ``DNC_TEST_KILL_AT_STEP=n`` kills the process at step n."""
  at = os.environ.get("DNC_TEST_KILL_AT_STEP")
  if at is not None and int(at) == step:
    os.kill(os.getpid(), signal.SIGKILL)


def _reached(stop_below: Optional[Tuple[str, float]],
             results: Dict[str, float]) -> bool:
  if stop_below is None or not results:
    return False
  metric, value = stop_below
  if metric not in results:
    raise KeyError(f"stop_below metric {metric!r} is not among the "
                   f"evaluation's metrics {sorted(results)}")
  return results[metric] < value


def _without_steps(record: Dict[str, Any]) -> Dict[str, Any]:
  """A run record less ``loop.steps``, which a resumed run may extend."""
  record = json.loads(json.dumps(record))
  record.get("loop", {}).pop("steps", None)
  return record
