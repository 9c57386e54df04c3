"""A jit-compiled optax training loop with evaluation, checkpoints and resume.

The loop is task-agnostic: a task supplies ``sample(rng, batch_size)``,
``loss(logits, batch)`` and ``metrics(logits, batch)``; the model is any
``apply(params, inputs) -> logits``. The batch of step ``s`` is drawn from
``np.random.default_rng([seed, s])``, so a resumed run sees exactly the data
stream it would have seen uninterrupted.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import pathlib
import signal
import time
from typing import Any, Callable, Dict, NamedTuple, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from experiments.checkpoints import (Checkpointer, CheckpointError,
                                     describe_differences)

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


def _global_norm(tree) -> jax.Array:
  return jnp.sqrt(sum(jnp.sum(jnp.square(x)) for x in jax.tree.leaves(tree)))


def make_train_step(apply_fn: Callable, task, optimizer,
                    axis_name: Optional[str] = None) -> Callable:
  """``step(state, batch) -> (state, metrics)``, to be jit-compiled.

  ``metrics`` holds the task's metrics on the batch, ``loss`` and
  ``grad_norm`` (before clipping). With ``axis_name`` the step runs on one
  shard of the batch per device (inside ``shard_map``): gradients and
  metrics are averaged over ``axis_name`` before the (replicated) update.
  """

  def step(state: TrainState, batch):
    def objective(params):
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
    metrics["grad_norm"] = _global_norm(grads)
    return TrainState(params, opt_state), metrics

  return step


def data_parallel_step(step: Callable, mesh: Mesh) -> Callable:
  """``step`` (made with ``axis_name="data"``) over ``mesh``'s devices.

  The state is replicated; batches, time-major ``[T, B, ...]``, are split
  along ``B``. Each device runs ``step`` (the fused CPU kernel included) on
  its shard; the means over devices make the update the same everywhere.
  """
  return jax.shard_map(step, mesh=mesh,
                       in_specs=(PartitionSpec(), PartitionSpec(None, "data")),
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


def _host(metrics: Dict[str, Any]) -> Dict[str, float]:
  return {k: float(v) for k, v in jax.device_get(metrics).items()}


class MetricsLog:
  """Appends one JSON object a line to ``path``."""

  def __init__(self, path: pathlib.Path):
    self.path = path

  def write(self, **record):
    with self.path.open("a") as f:
      f.write(json.dumps(record) + "\n")


def train(*, init_fn: Callable, apply_fn: Callable, task,
          optimizer_config: OptimizerConfig, loop_config: LoopConfig,
          out_dir, run_record: Dict[str, Any],
          evaluate: Optional[Callable[[Any], Dict[str, float]]] = None,
          resume: bool = False, progress: bool = True,
          stop_after: Optional[int] = None) -> Dict[str, Any]:
  """Trains, evaluates and checkpoints; returns the final summary.

  Args:
    init_fn: ``init_fn(rng, inputs) -> params``.
    apply_fn: ``apply_fn(params, inputs [T, B, X]) -> logits [T, B, Y]``.
    task: supplies ``sample``, ``loss`` and ``metrics``.
    optimizer_config, loop_config: see their classes.
    out_dir: run folder: ``checkpoints/``, ``best/``, ``metrics.jsonl``.
    run_record: the run's configuration as plain JSON data; saved with every
      checkpoint, and a resumed run must match it (``loop.steps`` aside).
    evaluate: ``evaluate(params) -> {name: value}``, run every
      ``eval_every`` steps and at the end.
    resume: continue from the latest checkpoint in ``out_dir``. Without it,
      a folder that already holds checkpoints is refused.
    progress: show a progress bar.
    stop_after: stop (and checkpoint) once this step is reached, as if
      interrupted; for tests and time-boxed sessions.
  Returns:
    ``{"step", "stopped", "train": last batch metrics, "eval": last
    evaluation}``.
  """
  from tqdm import tqdm  # Imported late: only the loop needs it.

  out_dir = pathlib.Path(out_dir)
  out_dir.mkdir(parents=True, exist_ok=True)
  checkpointer = Checkpointer(out_dir / "checkpoints")
  best_checkpointer = (Checkpointer(out_dir / "best", max_to_keep=1)
                       if loop_config.select_metric else None)
  log = MetricsLog(out_dir / "metrics.jsonl")
  optimizer = make_optimizer(optimizer_config)
  mesh = (data_mesh(loop_config.batch_size) if loop_config.data_parallel
          else None)

  def sample(step: int):
    rng = np.random.default_rng([loop_config.seed, step])
    batch = task.sample(rng, loop_config.batch_size)
    if mesh is not None:
      # Time-major [T, B, ...]: axis 1 is split over the devices.
      batch = jax.device_put(batch, NamedSharding(
          mesh, PartitionSpec(None, "data")))
    return batch

  def replicate(tree):
    return tree if mesh is None else jax.device_put(
        tree, NamedSharding(mesh, PartitionSpec()))

  state = replicate(initial_train_state(init_fn, optimizer_config,
                                        np.asarray(sample(0).inputs),
                                        loop_config.seed))
  start, best = 0, {"value": None, "step": None, "evals_since": 0}
  run_record = json.loads(json.dumps(run_record))  # Plain JSON, as saved.

  if checkpointer.latest_step() is not None:
    if not resume:
      raise CheckpointError(
          f"{checkpointer.directory} already holds checkpoints: pass "
          "resume=True (--resume) to continue that run, or use another "
          "output folder")
    saved = checkpointer.read_record()
    differences = describe_differences(
        _without_steps(saved.get("run", {})), _without_steps(run_record))
    if differences:
      raise CheckpointError(
          "the checkpoint in {} belongs to a different run: {}".format(
              checkpointer.directory, "; ".join(differences)))
    state, saved = checkpointer.restore(state)
    state = replicate(state)
    start, best = saved["step"], saved.get("best", best)
    print(f"resumed from step {start} of {checkpointer.directory}")
  elif resume:
    print(f"no checkpoint in {checkpointer.directory}: starting afresh")

  if mesh is None:
    step_fn = make_train_step(apply_fn, task, optimizer)
  else:
    step_fn = data_parallel_step(
        make_train_step(apply_fn, task, optimizer, axis_name="data"), mesh)
  train_step = jax.jit(step_fn, donate_argnums=0)

  def save(step):
    checkpointer.save(step, state, {"run": run_record, "best": best})

  def run_evaluation(step) -> Dict[str, float]:
    results = evaluate(state.params) if evaluate else {}
    log.write(kind="eval", step=step, time=time.time(), **results)
    metric = loop_config.select_metric
    if metric is not None:
      if metric not in results:
        raise KeyError(f"select_metric {metric!r} is not among the "
                       f"evaluation's metrics {sorted(results)}")
      if best["value"] is None or results[metric] < best["value"]:
        best.update(value=results[metric], step=step, evals_since=0)
        best_checkpointer.save(step, state.params, {"run": run_record,
                                                    "metric": metric,
                                                    "value": results[metric]})
      else:
        best["evals_since"] += 1
    return results

  stop = _StopRequest()
  last_train, last_eval, stopped = {}, {}, None
  bar = tqdm(total=loop_config.steps, initial=start, disable=not progress,
             dynamic_ncols=True)
  step = start
  with stop.installed():
    # A crash inside this block propagates without a final save: the state
    # may be half-donated, and the last periodic checkpoint stands.
    try:
      while step < loop_config.steps:
        state, metrics = train_step(state, sample(step))
        step += 1
        bar.update(1)
        if step % loop_config.log_every == 0 or step == loop_config.steps:
          last_train = _host(metrics)
          log.write(kind="train", step=step, time=time.time(), **last_train)
          bar.set_postfix({k: f"{v:.3g}" for k, v in last_train.items()
                           if k != "grad_norm"})
        evaluate_now = (loop_config.eval_every
                        and step % loop_config.eval_every == 0)
        fresh_eval = {}
        if evaluate_now and step < loop_config.steps:
          fresh_eval = last_eval = run_evaluation(step)
          bar.write(f"step {step}: " + ", ".join(
              f"{k} {v:.4g}" for k, v in last_eval.items()))
          if (loop_config.patience is not None
              and best["evals_since"] >= loop_config.patience):
            stopped = "early stopping"
        if step % loop_config.checkpoint_every == 0:
          save(step)
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
      save(step)
  if stopped is None:
    last_eval = run_evaluation(step)
  checkpointer.close()
  summary = {"step": step, "stopped": stopped, "train": last_train,
             "eval": last_eval, "best": best}
  (out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
  return summary


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
