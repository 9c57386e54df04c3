"""The graph tasks in the trainer's task protocol (``experiments/tasks/
base.py`` on branch ``arch-exp``), under their curricula.

:class:`CurriculumTask` is what the one trainer gets for ``--task
traversal|inference|shortest_path``: ``sample`` draws the curriculum's
(mixed) batches, ``evaluate`` judges the current lesson on fresh episodes
(``valid/accuracy``), ``after_evaluation`` applies the pass rule, and the
curriculum state goes into checkpoints. Shortest path trains closed loop:
``make_train_step`` returns a step that runs the model's core a step at a
time inside ``jax.lax.scan`` with the DAgger feedback (``dagger``), and
``evaluate`` runs it network-only (beta = 0) and scores minimal paths.

``examples_seen`` counts the batches drawn, and an evaluation at step ``s``
resets it to ``s`` times the training batch size: the trainer also draws a
batch to learn shapes, which must not count (a resumed run restores the
count after drawing it, an uninterrupted one would keep it).
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

from experiments.graphs import dagger
from experiments.graphs import encoding
from experiments.graphs.curriculum import Curriculum, Schedule
from experiments.tasks.base import TaskBase, global_norm


class CurriculumTask(TaskBase):
  """A graph task and its curriculum, as the trainer's ``Task``.

  Args:
    task: ``"traversal"``, ``"inference"`` or ``"shortest_path"``.
    lesson: starting lesson (1-based).
    schedule: overrides the paper's curriculum.
    eval_seed: evaluation episodes of step ``s`` come from
      ``default_rng([eval_seed, s])`` (fresh each time, reproducible).
    eval_batch_size: episodes per evaluation forward pass.
    **task_kwargs: for the task class (``beta``, ``slack``,
      ``ambiguous_fraction``).
  """

  input_size = encoding.INPUT_SIZE
  output_size = encoding.OUTPUT_SIZE

  def __init__(self, task: str, lesson: int = 1,
               schedule: Optional[Schedule] = None,
               eval_seed: int = 2 ** 31 - 1, eval_batch_size: int = 50,
               **task_kwargs):
    self.curriculum = Curriculum(task, lesson, schedule, **task_kwargs)
    self.name = task
    self.eval_seed = eval_seed
    self.eval_batch_size = eval_batch_size
    self._model = None
    self._rollout: Optional[Callable] = None
    self._batch_size = 0

  @property
  def closed_loop(self) -> bool:
    return self.name == "shortest_path"

  def sample(self, rng: np.random.Generator, batch_size: int):
    """The curriculum's (mixed) batch (counted; see the module doc)."""
    self._batch_size = batch_size
    return self.curriculum.sample(rng, batch_size)

  def loss(self, outputs: jax.Array, batch) -> jax.Array:
    return self.curriculum.task().loss(outputs, batch)

  def metrics(self, outputs: jax.Array, batch) -> Dict[str, jax.Array]:
    return self.curriculum.task().metrics(outputs, batch)

  def evaluate(self, predict: Callable, params: Any,
               step: int) -> Dict[str, float]:
    """Fraction of fresh current-lesson episodes solved (modal outputs).

    Returns ``{"valid/accuracy", "valid/lesson", "valid/examples_seen"}``;
    for shortest path the accuracy is the fraction of minimal network-only
    paths. ``examples_seen`` becomes ``step`` times the training batch.
    """
    self.curriculum.examples_seen = step * self._batch_size
    rng = np.random.default_rng([self.eval_seed, step])
    task = self.curriculum.evaluation_task()
    episodes = self.curriculum.schedule.eval_episodes
    if self.closed_loop:
      if self._rollout is None:
        raise ValueError("shortest path evaluates closed loop: call "
                         "make_train_step(model, optimizer) first")
      run = lambda batch: np.asarray(self._rollout(params, batch).choice)
      accuracy = task.evaluate(run, rng, episodes, self.eval_batch_size)
    else:
      accuracy = task.evaluate(lambda x: predict(params, x), rng, episodes,
                               self.eval_batch_size)
    return {"valid/accuracy": accuracy,
            "valid/lesson": float(self.curriculum.lesson),
            "valid/examples_seen": float(self.curriculum.examples_seen)}

  def after_evaluation(self, results: Dict[str, float]) -> Dict[str, Any]:
    """Applies the pass rule to ``results["valid/accuracy"]``."""
    if "valid/accuracy" not in results:
      raise ValueError(f"results need 'valid/accuracy', got "
                       f"{sorted(results)}")
    record = self.curriculum.after_evaluation(
        {"accuracy": results["valid/accuracy"]})
    if not record["advanced"]:
      return {}
    return {"lesson": self.curriculum.lesson,
            "examples_seen": self.curriculum.examples_seen}

  def curriculum_state(self) -> Dict[str, Any]:
    return self.curriculum.curriculum_state()

  def restore_curriculum(self, state: Dict[str, Any]) -> None:
    self.curriculum.restore_curriculum(state)

  def make_train_step(self, model: Any, optimizer: Any):
    """``None`` (open loop) except for shortest path: the DAgger step.

    Args:
      model: ``core.initial_state(params, B)`` and ``core.step(params,
        x [B, 92], state) -> (y [B, 90], state)`` are used.
      optimizer: an ``optax.GradientTransformation``.
    """
    if not self.closed_loop:
      return None
    if getattr(model, "core", None) is None:
      raise ValueError("shortest path needs a model with a core (a step at "
                       "a time) to run closed loop")
    core = model.core
    self._model = model

    def rollout(params, batch):
      inner = core.initial_state(params, batch.inputs.shape[1])
      return dagger.functional_rollout(core.step, params, inner, batch)

    self._rollout = jax.jit(rollout)

    def step(state, batch, key):
      del key  # The coins are in the batch (seeded by the trainer's rng).

      def objective(params):
        outputs = rollout(params, batch)
        return dagger.closed_loop_loss(outputs), outputs

      (loss, outputs), grads = jax.value_and_grad(objective, has_aux=True)(
          state.params)
      updates, opt_state = optimizer.update(grads, state.opt_state,
                                            state.params)
      params = optax.apply_updates(state.params, updates)
      right = encoding.step_correct(outputs.logits, outputs.target)
      mask = outputs.mask
      metrics = {
          "loss": loss,
          "step_accuracy": jnp.sum(right * mask) / jnp.maximum(
              jnp.sum(mask), 1.0),
          "answer_steps": jnp.sum(mask) / mask.shape[1],
          "grad_norm": global_norm(grads),  # before clipping
      }
      return type(state)(params, opt_state), metrics

    return step


def make(task: str, **kwargs) -> CurriculumTask:
  """The registry entry: ``make("traversal")`` etc.; ValueError if unknown."""
  return CurriculumTask(task, **kwargs)
