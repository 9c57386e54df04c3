"""The task protocol: what the one trainer (``experiments.loop``) needs.

A task is an object with the attributes and methods of :class:`Task`. Open-
loop tasks (every bit task, bAbI) supply data and a loss; the trainer builds
the step. Closed-loop tasks (a network's own outputs fed back into its next
inputs, as DAgger for shortest paths; RL rollouts of a batch of
environments, as Mini-SHRDLU) supply their own step through
:meth:`Task.make_train_step`, and keep the trainer's seeding, checkpoints,
metrics, evaluation, curriculum and stop handling. A task whose networks are
not the one DNC of the model settings (Mini-SHRDLU: separate policy and value
networks) also supplies them, through the optional hook
:meth:`TaskBase.make_model` (``make_model(model_config) -> Model``), as one
:class:`experiments.models.Model` whose ``init`` returns every network's
parameters as one pytree: the trainer's optimiser, checkpoints and resume
handle that pytree unchanged.

Arrays are time-major: ``inputs [T, B, X]`` (or ``[T, B]`` token ids),
``mask [T, B]``. The batch of step ``s`` is drawn with
``np.random.default_rng([seed, s])``, so a resumed run sees the same stream.
"""

from __future__ import annotations

from typing import (Any, Callable, Dict, NamedTuple, Optional, Protocol,
                    runtime_checkable)

import jax
import jax.numpy as jnp
import numpy as np

# ``apply(params, inputs [T, B, X]) -> outputs [T, B, Y]`` (jit-able).
ApplyFn = Callable[[Any, Any], jax.Array]
# ``step(state: TrainState, batch, rng_key) -> (state, {name: scalar})``.
TrainStep = Callable[[Any, Any, jax.Array], Any]


def global_norm(tree) -> jax.Array:
  """The L2 norm of all of ``tree``'s leaves together (``grad_norm``)."""
  return jnp.sqrt(sum(jnp.sum(jnp.square(x)) for x in jax.tree.leaves(tree)))


class Batch(NamedTuple):
  """The least a batch holds; tasks may use any NamedTuple with these fields.

  Attributes:
    inputs: ``[T, B, X]`` float32 (or ``[T, B]`` int32 ids).
    targets: ``[T, B, Y]`` (or ``[T, B]`` ids).
    mask: ``[T, B]`` float32, 1 where the target counts.
  """

  inputs: np.ndarray
  targets: np.ndarray
  mask: np.ndarray


@runtime_checkable
class Task(Protocol):
  """What every task supplies (see :class:`TaskBase` for the defaults).

  Attributes:
    name: the registry name (``--task NAME``).
    input_size: width ``X`` of the model's (one-hot) inputs.
    output_size: width ``Y`` of its outputs.
  """

  name: str
  input_size: int
  output_size: int

  def sample(self, rng: np.random.Generator, batch_size: int) -> Any:
    """A batch: a NamedTuple of numpy arrays with ``inputs`` and ``mask``."""

  def loss(self, outputs: jax.Array, batch: Any) -> jax.Array:
    """Scalar loss of ``outputs [T, B, Y]`` on ``batch`` (jit-able)."""

  def metrics(self, outputs: jax.Array, batch: Any) -> Dict[str, jax.Array]:
    """``{name: scalar}`` on ``batch`` (jit-able)."""

  def evaluate(self, predict: ApplyFn, params: Any,
               step: int) -> Dict[str, float]:
    """Host-side evaluation: ``{"valid/...": value, ...}``."""

  # Curriculum: a JSON-able state saved in every checkpoint and metric line.
  def curriculum_state(self) -> Dict[str, Any]:
    """The lesson and whatever picks the next; ``{}`` without curriculum."""

  def restore_curriculum(self, state: Dict[str, Any]) -> None:
    """Back to a state :meth:`curriculum_state` returned (on ``--resume``)."""

  def after_evaluation(self, results: Dict[str, float]) -> Dict[str, Any]:
    """Called after each evaluation; may advance the lesson.

    Returns what changed (``{}`` if nothing), logged by the trainer. A task
    whose batch shapes change with the lesson gets a recompiled step.
    """

  # Closed loop: ``None`` (the default) lets the trainer build the step.
  def make_train_step(self, model: Any, optimizer: Any
                      ) -> Optional[TrainStep]:
    """The task's own step, or ``None`` for the trainer's open-loop step.

    Args:
      model: an :class:`experiments.models.Model`: ``init``, ``apply``
        (``apply(params, inputs [T, B, X]) -> outputs [T, B, Y]``) and
        ``core`` (``initial_state(params, B)``, ``step(params, x [B, X],
        state) -> (y [B, Y], state)``: the same parameters a step at a
        time, to feed the network's own outputs back or step environments
        inside one ``jax.lax.scan``).
      optimizer: the ``optax.GradientTransformation`` to update with.
    Returns:
      ``step(state, batch, key) -> (state, metrics)``, a pure function the
      trainer jit-compiles (donating ``state``): ``state`` is a
      :class:`experiments.loop.TrainState` (``params``, ``opt_state``);
      ``batch`` is what :meth:`sample` drew for this step (e.g. graphs and
      queries, or initial environment states); ``key`` is
      ``fold_in(PRNGKey(seed), step)``, for exploration. ``metrics`` must
      hold ``"loss"``; the trainer adds ``"grad_norm"`` if absent.
    """


class TaskBase:
  """Defaults for the optional parts of :class:`Task`.

  Subclasses set ``name``, ``input_size``, ``output_size`` and define
  ``sample``, ``loss`` and ``metrics``; ``evaluate`` defaults to the metrics
  on ``eval_batches`` fixed batches drawn from ``sample``.
  """

  name: str = "task"
  eval_batches: int = 1
  eval_batch_size: int = 100
  eval_seed: int = 2 ** 31 - 1

  def evaluate(self, predict: ApplyFn, params: Any,
               step: int) -> Dict[str, float]:
    del step  # Fixed batches: evaluations are comparable across steps.
    totals: Dict[str, float] = {}
    for i in range(self.eval_batches):
      batch = self.sample(np.random.default_rng([self.eval_seed, i]),
                          self.eval_batch_size)
      outputs = predict(params, batch.inputs)
      values = dict(self.metrics(outputs, batch),
                    loss=self.loss(outputs, batch))
      for key, value in values.items():
        totals[key] = totals.get(key, 0.0) + float(value) / self.eval_batches
    return {f"valid/{k}": v for k, v in totals.items()}

  def curriculum_state(self) -> Dict[str, Any]:
    return {}

  def restore_curriculum(self, state: Dict[str, Any]) -> None:
    if state:
      raise ValueError(f"task {self.name!r} has no curriculum, but the "
                       f"checkpoint holds one: {state}")

  def after_evaluation(self, results: Dict[str, float]) -> Dict[str, Any]:
    del results
    return {}

  # Optional hook, not part of :class:`Task` (``isinstance`` does not ask
  # for it): ``getattr(task, "make_model", None)``.
  def make_model(self, model_config: Dict[str, Any]) -> Optional[Any]:
    """The task's own :class:`experiments.models.Model`, or ``None``.

    Args:
      model_config: the run's ``model`` settings (plain JSON data, as the
        preset and the flags give them).
    Returns:
      ``None`` for the command line's DNC; else a ``Model`` whose
      ``init(rng, inputs) -> params`` returns all of the task's networks'
      parameters as ONE pytree (e.g. ``{"policy/...": ..., "value/...":
      ...}``), ``apply(params, inputs [T, B, X]) -> outputs [T, B, Y]`` and,
      for a closed-loop step, ``core``. The command line trains that
      ``Model`` (``init_fn=model.init``, ``model=model``) and hands it back
      to :meth:`make_train_step`; the optimiser state, checkpoints, ``best/``
      and ``--resume`` treat the pytree as any other parameters. Called
      once, before :meth:`make_train_step`; the task may keep the model
      (e.g. to run episodes in :meth:`evaluate`).
    """
    del model_config
    return None


  def make_train_step(self, model: Any, optimizer: Any
                      ) -> Optional[TrainStep]:
    del model, optimizer
    return None

  # The rest of the protocol, for type checkers and a clear error.
  def sample(self, rng: np.random.Generator, batch_size: int) -> Any:
    raise NotImplementedError(f"{type(self).__name__}.sample")

  def loss(self, outputs: jax.Array, batch: Any) -> jax.Array:
    raise NotImplementedError(f"{type(self).__name__}.loss")

  def metrics(self, outputs: jax.Array, batch: Any) -> Dict[str, jax.Array]:
    raise NotImplementedError(f"{type(self).__name__}.metrics")
