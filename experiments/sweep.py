"""Seed and hyper-parameter sweeps trained as one program.

``dnc-train --task repeat_copy --seeds 8`` (or ``--sweep
learning_rate=1e-4,3e-4``, or both: every seed with every value) trains
``M`` members in one jit-compiled step ``vmap``-ed over a leading member
axis of the parameters, the optimiser states and the batches:

* member ``m`` has its own seed, which draws its parameters
  (``PRNGKey(seed)``) and its data stream (the batch of step ``s`` from
  ``np.random.default_rng([seed, s])``), exactly as a single
  ``dnc-train --seed SEED`` run: a seed sweep is the same as ``M`` runs,
  and members that differ only in a hyper-parameter see the same data;
* swept optimiser hyper-parameters are traced per-member values held in the
  optimiser state (``optax.inject_hyperparams``), so one compilation
  serves every value. Only fields that keep every array's shape and the
  step's structure can be swept (:data:`SWEEPABLE`); the others (memory
  size, optimiser name, ...) are refused with a one-line error.

The step runs over a ``("model", "data")`` mesh (:mod:`experiments.
distributed`): members along ``model``, each member's batch along ``data``
(``shard_map``, so the CPU kernels' custom calls see local arrays). One
device or many, one process or many, it is the same function. Metrics are
logged per member (``metrics.jsonl`` lines with ``member``); one
checkpoint holds every member; ``summary.json`` and ``dnc-sweep-eval``
give each final metric as mean ± s.d. over members, as the paper reports.
Sweeps train for a fixed number of steps: no best parameters, early
stopping or target (members would stop at different steps).
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import pathlib
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from experiments import distributed
from experiments.checkpoints import Checkpointer, CheckpointError
from experiments.loop import (LoopConfig, MetricsLog, OptimizerConfig,
                              check_finite_metrics, check_finite_params,
                              TrainState, _StopRequest, make_run_folder,
                              make_train_step, resume_state)

# Optimiser fields a sweep may vary: numbers the update reads, not shapes.
SWEEPABLE = ("learning_rate", "max_grad_norm", "decay", "epsilon",
             "momentum")


@dataclasses.dataclass(frozen=True)
class Member:
  """One sweep member: its seed and its optimiser settings."""

  seed: int
  optimizer: OptimizerConfig

  def describe(self) -> Dict[str, Any]:
    return {"seed": self.seed, **{f: getattr(self.optimizer, f)
                                  for f in SWEEPABLE}}


def parse_seeds(text: str, base_seed: int = 0) -> List[int]:
  """``"4"``: seeds ``base .. base+3``; ``"0,5,9"``: those seeds."""
  try:
    if "," in text:
      seeds = [int(s) for s in text.split(",") if s.strip()]
    else:
      seeds = list(range(base_seed, base_seed + int(text)))
  except ValueError:
    raise ValueError(f"--seeds takes a count or a list of ints, got "
                     f"{text!r}") from None
  if not seeds or len(set(seeds)) != len(seeds):
    raise ValueError(f"--seeds needs at least one seed, none repeated, got "
                     f"{text!r}")
  return seeds


def parse_sweep(items: Sequence[str]) -> Dict[str, List[float]]:
  """``["learning_rate=1e-4,3e-4"]`` -> ``{"learning_rate": [1e-4, 3e-4]}``.

  Raises:
    ValueError: a malformed item, a field that changes shapes or the
      step's structure, or mixed zero and non-zero momentum.
  """
  sweep = {}
  for item in items:
    field, sep, values = item.partition("=")
    field = field.strip().replace("-", "_")
    if not sep or not values:
      raise ValueError(f"--sweep takes FIELD=V1,V2,..., got {item!r}")
    if field not in SWEEPABLE:
      raise ValueError(
          f"--sweep {field}: only {', '.join(SWEEPABLE)} can be swept in one "
          "program (other settings change array shapes or the compiled "
          "step); run separate dnc-train jobs for them")
    try:
      sweep[field] = [float(v) for v in values.split(",")]
    except ValueError:
      raise ValueError(f"--sweep {field}: values must be numbers, got "
                       f"{values!r}") from None
  momentum = sweep.get("momentum", [])
  if momentum and 0 in momentum and any(momentum):
    raise ValueError("--sweep momentum: zero and non-zero momentum differ in "
                     "optimiser state; sweep non-zero values only")
  return sweep


def make_members(base: OptimizerConfig, seeds: Sequence[int],
                 sweep: Dict[str, List[float]]) -> List[Member]:
  """Every seed with every combination of the swept values (seed-major)."""
  fields = sorted(sweep)
  members = []
  for seed in seeds:
    for values in itertools.product(*(sweep[f] for f in fields)):
      config = dataclasses.replace(base, **dict(zip(fields, values)))
      members.append(Member(int(seed), config))
  if len({bool(m.optimizer.momentum) for m in members}) > 1:
    raise ValueError("--sweep momentum: zero and non-zero momentum differ in "
                     "optimiser state; sweep non-zero values only")
  return members


def sweep_optimizer(base: OptimizerConfig) -> Callable[
    ..., optax.GradientTransformation]:
  """``make(**hyperparams)``: :func:`experiments.loop.make_optimizer`'s
  chain with the :data:`SWEEPABLE` values held (traced) in its state."""
  name, use_momentum = base.name, bool(base.momentum)

  def chain(learning_rate, max_grad_norm, decay, epsilon, momentum):
    if name == "rmsprop":
      update = optax.rmsprop(learning_rate, decay=decay, eps=epsilon,
                             initial_scale=1.0, eps_in_sqrt=True,
                             momentum=momentum if use_momentum else None)
    else:
      update = optax.adam(learning_rate, eps=epsilon)
    return optax.chain(optax.clip_by_global_norm(max_grad_norm), update)

  # float32 values: the state's dtypes stay those of init (also with x64).
  injected = optax.inject_hyperparams(chain, hyperparam_dtype=jnp.float32)

  def make(config: OptimizerConfig) -> optax.GradientTransformation:
    return injected(**{f: getattr(config, f) for f in SWEEPABLE})

  return make


def _stack(trees):
  return jax.tree.map(lambda *xs: np.stack([np.asarray(x) for x in xs]),
                      *trees)


def initial_members(init_fn: Callable, members: Sequence[Member], inputs
                    ) -> TrainState:
  """Each member's fresh state (as a lone run would init it), stacked
  along a leading member axis: a host (NumPy) tree."""
  make = sweep_optimizer(members[0].optimizer)
  init = jax.jit(init_fn)  # Compiled once: the eager init costs ~2 s each.
  states = []
  for member in members:
    params = init(jax.random.PRNGKey(member.seed), inputs)
    states.append(TrainState(params, make(member.optimizer).init(params)))
  return _stack(states)


def _over_members(one: Callable, per_step: Optional[int] = None
                  ) -> Callable:
  """``one`` over a device's leading member axis.

  All members at once (``vmap``) unless ``per_step`` is smaller than the
  member count: then ``per_step`` at a time, in a loop inside the program
  (``jax.lax.map``). A single member is called directly, since a batch
  dimension of size one turns every product into a batched product.
  """
  vmapped = jax.vmap(one)

  def run(state, batch):
    count = jax.tree.leaves(state)[0].shape[0]  # Static under tracing.
    if count == 1:
      first = lambda tree: jax.tree.map(lambda x: x[0], tree)
      state, metrics = one(first(state), first(batch))
      return jax.tree.map(lambda x: x[None], (state, metrics))
    if per_step is None or per_step >= count:
      return vmapped(state, batch)
    return jax.lax.map(lambda pair: one(*pair), (state, batch),
                       batch_size=per_step)

  return run


def auto_members_per_step(model: Dict[str, Any]) -> Optional[int]:
  """Members per step for a sweep of ``model`` (its settings) here.

  On the CPU, members of a model with a large memory (N >= 128) run one
  at a time inside the program: one member's batch already fills the cores
  and S members' stacked link residuals multiply the memory traffic (dnc1
  at bAbI length: 4 members vmapped ran at 0.83x one after another, in a
  loop 1.0x; a 16-slot model vmapped 1.4-1.5x;
  ``benchmarks/results/cpu-sweep-2026-11-30-stop11.md``). Elsewhere all
  members at once (``None``).
  """
  if jax.default_backend() == "cpu" and model.get("memory_size", 0) >= 128:
    return 1
  return None


def make_sweep_step(apply_fn: Callable, task, base: OptimizerConfig,
                    mesh: Mesh, members_per_step: Optional[int] = None
                    ) -> Callable:
  """``step(state, batch) -> (state, metrics)`` over ``mesh``, jit-compiled.

  ``state`` has a leading member axis ``[M, ...]`` (sharded along
  ``model``), ``batch`` is ``[M, T, B, ...]`` (members along ``model``,
  ``B`` along ``data``); ``metrics`` are ``[M]``. Inside, each device runs
  the one-member step of :func:`experiments.loop.make_train_step`
  ``vmap``-ed over its members, gradients averaged over ``data``.
  """
  optimizer = sweep_optimizer(base)(base)  # Values come from the state.
  one = make_train_step(apply_fn, task, optimizer, axis_name="data")
  step = jax.shard_map(_over_members(one, members_per_step), mesh=mesh,
                       in_specs=(P("model"), P("model", None, "data")),
                       out_specs=(P("model"), P("model")), check_vma=False)
  return jax.jit(step, donate_argnums=0)


def place_state(state, mesh: Mesh):
  """A host state ``[M, ...]`` as global arrays sharded along ``model``."""
  sharding = NamedSharding(mesh, P("model"))
  return jax.tree.map(
      lambda x: jax.make_array_from_callback(
          x.shape, sharding, lambda index, x=x: np.asarray(x)[index]), state)


class MemberSampler:
  """``sample(step)``: the ``[M, T, B, ...]`` batch as a global array.

  Member ``m``'s batch is drawn from ``default_rng([seed_m, step])``; each
  process draws only the members it holds and places only its shards. A
  task whose batch shapes vary from step to step (bAbI's length buckets)
  has ``sample_like(rng, batch_size, like)``: member 0 draws its batch as a
  lone run would, and every other member draws its own batch in the shape
  of member 0's (see :meth:`experiments.tasks.babi.BabiTask.sample_like`).
  """

  def __init__(self, task, members: Sequence[Member], batch_size: int,
               mesh: Mesh):
    self.task, self.batch_size = task, batch_size
    self.seeds = [m.seed for m in members]
    self.sharding = NamedSharding(mesh, P("model", None, "data"))

  def one(self, seed: int, step: int, like=None):
    """Member ``seed``'s batch of ``step`` (shaped as ``like`` if given
    and the task has ``sample_like``)."""
    rng = np.random.default_rng([seed, step])
    same_shape = getattr(self.task, "sample_like", None)
    if like is not None and same_shape is not None:
      return same_shape(rng, self.batch_size, like)
    return self.task.sample(rng, self.batch_size)

  def __call__(self, step: int):
    example = self.one(self.seeds[0], step)
    cache = {self.seeds[0]: example}

    def member(m):
      seed = self.seeds[m]
      if seed not in cache:
        batch = self.one(seed, step, like=example)
        for name, a, b in zip(example._fields, example, batch):
          if np.shape(a) != np.shape(b):
            raise ValueError(
                f"sweep members' batches differ in shape at step {step} "
                f"({name}: seed {self.seeds[0]} {np.shape(a)}, seed {seed} "
                f"{np.shape(b)}); task {getattr(self.task, 'name', '?')!r} "
                "needs sample_like to sweep")
        cache[seed] = batch
      return cache[seed]

    fields = []
    for i, leaf in enumerate(example):
      shape = (len(self.seeds),) + np.shape(leaf)
      spec = self.sharding if np.ndim(leaf) >= 2 else NamedSharding(
          self.sharding.mesh, P("model", None))

      def block(index, i=i):
        rows = range(len(self.seeds))[index[0]]
        return np.stack([np.asarray(member(m)[i])[index[1:]] for m in rows])

      fields.append(jax.make_array_from_callback(shape, spec, block))
    return type(example)(*fields)


def host(tree):
  """A tree of (possibly multi-process) arrays as NumPy on every process."""
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils
    return multihost_utils.process_allgather(tree, tiled=True)
  return jax.device_get(tree)


def member_params(state_host: TrainState, m: int):
  return jax.tree.map(lambda x: x[m], state_host.params)


def members_of_record(record: Dict[str, Any]) -> List[Member]:
  """A sweep run record's members (``record["sweep"]`` and its optimiser)."""
  spec = record["sweep"]
  return make_members(OptimizerConfig(**record["optimizer"]), spec["seeds"],
                      spec["sweep"])


def load_members(run_dir, init_fn: Callable, record: Dict[str, Any], inputs,
                 step: Optional[int] = None):
  """``(params of each member, saved record)`` of a sweep's checkpoint
  (the latest, or ``step``); ``record`` is its run record."""
  members = members_of_record(record)
  template = jax.device_put(initial_members(init_fn, members, inputs))
  checkpointer = Checkpointer(pathlib.Path(run_dir) / "checkpoints",
                              create=False)
  try:
    state, saved = checkpointer.restore(template, step)
  finally:
    checkpointer.close()
  state = jax.device_get(state)
  return [member_params(state, m) for m in range(len(members))], saved


def mean_sd(values: Sequence[Dict[str, float]]) -> Dict[str, Dict[str, float]]:
  """``{metric: {"mean", "sd", "n"}}`` over members (s.d. with ``n - 1``)."""
  out = {}
  for key in sorted(set().union(*values)) if values else ():
    xs = np.array([v[key] for v in values if key in v], np.float64)
    out[key] = {"mean": float(xs.mean()),
                "sd": float(xs.std(ddof=1)) if len(xs) > 1 else 0.0,
                "n": int(len(xs))}
  return out


def format_mean_sd(stats: Dict[str, Dict[str, float]]) -> str:
  return "\n".join(f"{k}: {s['mean']:.4g} ± {s['sd']:.2g} (n={s['n']})"
                   for k, s in stats.items())


def train_sweep(*, init_fn: Callable, apply_fn: Callable, task,
                members: Sequence[Member], loop_config: LoopConfig,
                out_dir, run_record: Dict[str, Any],
                make_evaluate: Optional[Callable] = None,
                resume: bool = False, stop_after: Optional[int] = None,
                model_devices: Optional[int] = None,
                progress: bool = True,
                members_per_step: Optional[int] = None,
                on_start: Optional[Callable[[], None]] = None
                ) -> Dict[str, Any]:
  """Trains ``members`` together; returns the summary (see module doc).

  Args:
    init_fn, apply_fn, task, loop_config, run_record, resume, stop_after,
    on_start: as :func:`experiments.loop.train`.
    members: from :func:`make_members` (same optimiser name throughout).
    make_evaluate: ``make_evaluate(seed) -> evaluate(params) -> {name:
      value}``, each member's evaluation, at ``eval_every`` and the end.
    model_devices: devices along the mesh's ``model`` axis.
    members_per_step: members a device steps at once (``None``: all, vmapped;
      fewer run in a loop inside the program): see
      :func:`auto_members_per_step`.
  """
  own = getattr(task, "make_train_step", None)
  if own is not None and own(None, None) is not None:
    check_task(getattr(task, "name", str(task)))  # Names why, if it knows.
    raise ValueError(f"task {getattr(task, 'name', task)!r} brings its own "
                     "(closed-loop) step, which sweeps do not support")
  members = list(members)
  primary = jax.process_index() == 0
  out = pathlib.Path(out_dir)
  if primary:
    make_run_folder(out)
  mesh = distributed.make_mesh(len(members), loop_config.batch_size,
                               model_devices)
  sample = MemberSampler(task, members, loop_config.batch_size, mesh)
  run_record = json.loads(json.dumps(dict(
      run_record, members=[m.describe() for m in members])))
  fresh = initial_members(init_fn, members,
                          np.asarray(sample.one(members[0].seed, 0).inputs))
  state = place_state(fresh, mesh)
  checkpointer = Checkpointer(out / "checkpoints")
  start = 0
  if checkpointer.latest_step() is not None:
    if not resume:
      checkpointer.close()
      raise CheckpointError(
          f"{checkpointer.directory} already holds checkpoints: pass "
          "--resume to continue that sweep, or use another output folder")
    state, saved = resume_state(checkpointer, state, run_record)
    start = saved["step"]
    if primary:
      print(f"resumed the {len(members)}-member sweep from step {start}",
            flush=True)
  if on_start is not None:
    on_start()
  step_fn = make_sweep_step(apply_fn, task, members[0].optimizer, mesh,
                            members_per_step)
  evaluators = ([make_evaluate(m.seed) for m in members]
                if make_evaluate else None)
  log = MetricsLog(out / "metrics.jsonl")

  def write(**record):
    if primary:
      log.write(**record)

  where = f" in {checkpointer.directory}"

  def evaluate(state, step):
    if evaluators is None:
      return []
    check_finite_params(state.params, step, where, host)
    params = host(state)
    results = [evaluators[m](member_params(params, m))
               for m in range(len(members))]
    for m, result in enumerate(results):
      write(kind="eval", step=step, member=m, time=time.time(), **result)
    return results

  stop = _StopRequest()
  step, stopped, last_train, last_eval = start, None, [], []
  started = time.time()
  with stop.installed():
    while step < loop_config.steps:
      state, metrics = step_fn(state, sample(step))
      step += 1
      if step % loop_config.log_every == 0 or step == loop_config.steps:
        values = host(metrics)
        last_train = [{k: float(v[m]) for k, v in values.items()}
                      for m in range(len(members))]
        now = time.time()
        for m, result in enumerate(last_train):
          write(kind="train", step=step, member=m, time=now, **result)
        check_finite_metrics(values, step, where)
        if progress and primary:
          stats = mean_sd(last_train)
          print(f"step {step}: loss {stats['loss']['mean']:.4g} ± "
                f"{stats['loss']['sd']:.2g} over {len(members)} members",
                flush=True)
      if (loop_config.eval_every and step % loop_config.eval_every == 0
          and step < loop_config.steps):
        last_eval = evaluate(state, step)
      if step % loop_config.checkpoint_every == 0:
        _save(checkpointer, step, state, run_record)
      if stop.requested:
        stopped = "interrupted"
      elif stop_after is not None and step >= stop_after:
        stopped = "stop_after"
      if stopped:
        break
  if step > start and step % loop_config.checkpoint_every:
    _save(checkpointer, step, state, run_record)
  checkpointer.close()
  if stopped is None:
    last_eval = evaluate(state, step)
  summary = {"step": step, "stopped": stopped, "members": [
      dict(m.describe(), member=i,
           train=last_train[i] if last_train else {},
           eval=last_eval[i] if last_eval else {})
      for i, m in enumerate(members)],
             "train": mean_sd(last_train), "eval": mean_sd(last_eval),
             "mesh": dict(mesh.shape), "processes": jax.process_count(),
             "seconds": round(time.time() - started, 2)}
  if primary:
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
  return summary


def _save(checkpointer: Checkpointer, step: int, state, run_record):
  """Every process calls it: orbax writes each array once (multi-host).
  A member whose parameters are not finite stops the sweep unsaved."""
  check_finite_params(state.params, step, f" in {checkpointer.directory}",
                      host)
  checkpointer.save(step, state, {"run": run_record})


# --- The command line. ----------------------------------------------------

def add_flags(parser: argparse.ArgumentParser):
  """``--seeds``, ``--sweep`` and the scale-out flags."""
  group = parser.add_argument_group("sweeps (experiments/sweep.py)")
  group.add_argument("--seeds", default=None,
                     help="train this many seeds (from --seed) or these "
                     "comma-separated seeds as one program")
  group.add_argument("--sweep", action="append", default=[],
                     metavar="FIELD=V1,V2",
                     help="sweep an optimiser field ("
                     + ", ".join(SWEEPABLE) + "); repeatable; crossed "
                     "with --seeds")
  distributed.add_flags(parser)


def is_sweep(args, saved: Optional[Dict[str, Any]] = None) -> bool:
  return bool(args.seeds or args.sweep or (saved or {}).get("sweep"))


def run_bit_sweep(settings: Dict[str, Any], task_name: str, out_dir,
                  sweep_spec: Dict[str, Any], *, resume: bool = False,
                  progress: bool = True, stop_after: Optional[int] = None,
                  model_devices: Optional[int] = None,
                  evaluate: bool = True,
                  on_start: Optional[Callable[[], None]] = None
                  ) -> Dict[str, Any]:
  """A bit task's sweep from ``settings`` (as ``dnc-train`` builds them)
  and ``sweep_spec`` (``{"seeds": [...], "sweep": {field: [...]}}``);
  ``evaluate=False`` skips the evaluations; ``on_start`` as
  :func:`train_sweep`."""
  from dnc_jax import DNCConfig
  from experiments import cli
  from experiments.models import unrolled_dnc
  from experiments.tasks import bit
  check_task(task_name)
  task = bit.TASKS[task_name](**settings["task"])
  model_config = DNCConfig(output_size=task.output_size,
                           input_size=task.input_size, **settings["model"])
  loop = dict(settings["loop"], stop_below=None, select_metric=None,
              patience=None)
  loop_config = LoopConfig(**loop)
  base = OptimizerConfig(**settings["optimizer"])
  members = make_members(base, sweep_spec["seeds"], sweep_spec["sweep"])
  for member in members:
    OptimizerConfig(**dataclasses.asdict(member.optimizer))  # Validates.
  model = unrolled_dnc(model_config)
  record = dict(settings, task_name=task_name, task=dataclasses.asdict(task),
                model=dataclasses.asdict(model_config), sweep=sweep_spec)

  def make_evaluate(seed):
    return cli.make_evaluate(task, model.apply, seed,
                             settings["eval_batch_size"])

  return train_sweep(init_fn=model.init, apply_fn=model.apply, task=task,
                     members=members, loop_config=loop_config, out_dir=out_dir,
                     run_record=record,
                     make_evaluate=make_evaluate if evaluate else None,
                     resume=resume, stop_after=stop_after,
                     model_devices=model_devices, progress=progress,
                     members_per_step=auto_members_per_step(
                         settings["model"]), on_start=on_start)


def run_babi_sweep(settings: Dict[str, Any], out_dir,
                   sweep_spec: Dict[str, Any], *, resume: bool = False,
                   progress: bool = True, stop_after: Optional[int] = None,
                   model_devices: Optional[int] = None,
                   evaluate: bool = True,
                   preset: Optional[str] = None,
                   on_start: Optional[Callable[[], None]] = None
                   ) -> Dict[str, Any]:
  """A bAbI sweep from ``settings`` (as ``dnc-train --task babi`` builds
  them): see :func:`run_bit_sweep`.

  The training/validation split, the vocabulary and the validation subset
  are drawn with the loop's ``--seed`` and shared by every member (as the
  paper's runs share the data set). Member 0 draws each step's length
  bucket and stories as a lone run with its seed would; the other members
  draw their own stories in that bucket (:class:`MemberSampler`). So when
  member 0's seed is ``--seed`` (always with ``--seeds S``), the members
  with that seed train exactly as ``dnc-train --task babi --seed SEED``
  (with their swept settings). Each member is evaluated on the validation
  subset (per-task question error, mean error, failed tasks), as a lone
  run is.
  """
  from experiments import cli
  parts = cli.babi_parts(settings, preset, select=False)
  loop_config = dataclasses.replace(parts.loop, stop_below=None)
  members = make_members(parts.optimizer, sweep_spec["seeds"],
                         sweep_spec["sweep"])
  for member in members:
    OptimizerConfig(**dataclasses.asdict(member.optimizer))  # Validates.
  record = dict(parts.record, loop=dataclasses.asdict(loop_config),
                sweep=sweep_spec)
  out = pathlib.Path(out_dir)

  def start():
    # Like settings.json: written once the checkpoint accepts the run, so
    # a refused resume keeps the vocabulary its checkpoints were built on.
    if jax.process_index() == 0:
      parts.vocab.save(out / "vocab.json")
    if on_start is not None:
      on_start()

  make_evaluate = None
  if evaluate and parts.task.valid:
    predict = parts.model.apply  # One object: the task compiles it once.

    def make_evaluate(seed):
      del seed  # The validation subset is the run's, not the member's.
      return lambda params: parts.task.evaluate(predict, params, 0)

  return train_sweep(init_fn=parts.model.init, apply_fn=parts.model.apply,
                     task=parts.task, members=members,
                     loop_config=loop_config, out_dir=out,
                     run_record=record, make_evaluate=make_evaluate,
                     resume=resume, stop_after=stop_after,
                     model_devices=model_devices, progress=progress,
                     members_per_step=auto_members_per_step(
                         settings["model"]), on_start=start)


def run_sweep(settings: Dict[str, Any], task_name: str, out_dir,
              sweep_spec: Dict[str, Any], **kwargs) -> Dict[str, Any]:
  """:func:`run_babi_sweep` or :func:`run_bit_sweep` for ``task_name``."""
  check_task(task_name)
  if task_name == "babi":
    return run_babi_sweep(settings, out_dir, sweep_spec, **kwargs)
  kwargs.pop("preset", None)
  return run_bit_sweep(settings, task_name, out_dir, sweep_spec, **kwargs)


def check_task(task_name: str):
  """One-line ``ValueError`` unless sweeps support ``task_name``.

  The bit tasks and bAbI are supported. The graph tasks and Mini-SHRDLU
  are refused: they train under a curriculum, which each member would
  pass at its own time, moving on to lessons of other sizes (graphs,
  episodes, so array shapes) than the other members' while one vmapped
  step needs one shape for all of them.
  """
  from experiments.tasks import bit, graph
  if task_name in bit.TASKS or task_name == "babi":
    return
  if task_name == "shrdlu" or task_name in graph.TASKS:
    raise ValueError(
        f"--seeds/--sweep: task {task_name!r} is not supported: it trains "
        "closed-loop under a curriculum, and members' curricula diverge "
        "(each passes its lessons at its own step, and lessons differ in "
        "array shapes) while a sweep runs every member in one step of one "
        "shape; train each seed as its own run (--seed)")
  raise ValueError(f"--seeds/--sweep support the bit tasks "
                   f"{sorted(bit.TASKS)} and babi, not {task_name!r}")


def sweep_spec_from_args(args, settings, saved=None) -> Dict[str, Any]:
  """``{"seeds", "sweep"}`` from the flags, or a resumed run's saved one."""
  if saved and saved.get("sweep") and not (args.seeds or args.sweep):
    return saved["sweep"]
  seed = settings["loop"].get("seed", 0)
  seeds = parse_seeds(args.seeds, seed) if args.seeds else [seed]
  return {"seeds": seeds, "sweep": parse_sweep(args.sweep)}


def eval_main(argv: Optional[List[str]] = None) -> int:
  """``dnc-sweep-eval --run RUN``: a sweep's final metrics, mean ± s.d.

  For a bAbI sweep, Extended Data Table 1's layout: each task's error on
  the loop's validation subset as mean ± s.d. over the members (of each
  swept setting), the best member's and each member's failed tasks.
  """
  parser = argparse.ArgumentParser(
      prog="dnc-sweep-eval", description=eval_main.__doc__.split("\n\n")[0])
  parser.add_argument("--run", required=True, help="the sweep's run folder")
  parser.add_argument("--json", action="store_true", help="print JSON")
  args = parser.parse_args(argv)
  path = pathlib.Path(args.run) / "summary.json"
  try:
    summary = json.loads(path.read_text())
  except (OSError, ValueError) as error:
    parser.exit(2, f"dnc-sweep-eval: error: cannot read {path} ({error})\n")
  if "members" not in summary:
    parser.exit(2, f"dnc-sweep-eval: error: {args.run} is not a sweep\n")
  groups: Dict[str, List[Dict[str, Any]]] = {}
  for member in summary["members"]:
    key = ", ".join(f"{f}={member[f]:g}" for f in SWEEPABLE
                    if len({m[f] for m in summary["members"]}) > 1)
    groups.setdefault(key or "all members", []).append(member)
  report = {key: {"seeds": [m["seed"] for m in group],
                  "eval": mean_sd([m["eval"] for m in group]),
                  "train": mean_sd([m["train"] for m in group])}
            for key, group in groups.items()}
  if args.json:
    print(json.dumps(report, indent=2))
    return 0
  print(f"{args.run}: step {summary['step']}, {len(summary['members'])} "
        "members")
  for key, group in groups.items():
    entry = report[key]
    print(f"\n[{key}] seeds {entry['seeds']}")
    table = babi_members_table([m["eval"] for m in group])
    if table is None:
      print(format_mean_sd(entry["eval"] or entry["train"]))
    else:
      from experiments.tasks import babi
      print(babi.markdown_table(table, "valid (the loop's subset)",
                                _kind(args.run)))
  return 0


def babi_members_table(evals: Sequence[Dict[str, float]]
                       ) -> Optional[Dict[str, Any]]:
  """A bAbI sweep's members' evaluations as one mean ± s.d. table
  (:func:`experiments.tasks.babi.members_table`); ``None`` if they are
  not bAbI evaluations."""
  from experiments.tasks import babi
  if not evals or not all("valid/mean_error" in e for e in evals):
    return None
  return babi.members_table([babi.table_from_metrics(e) for e in evals])


def _kind(run) -> str:
  try:
    saved = json.loads((pathlib.Path(run) / "settings.json").read_text())
    return saved["settings"].get("kind", "dnc")
  except (OSError, ValueError, KeyError):
    return "dnc"


if __name__ == "__main__":
  sys.exit(eval_main())
