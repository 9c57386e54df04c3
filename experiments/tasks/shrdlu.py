"""Mini-SHRDLU (the paper's RL puzzle) as a task of the one trainer.

A closed-loop task (:mod:`experiments.tasks.base`): the step is the task's
own (:meth:`ShrdluTask.make_train_step`: rollout of a batch of boards, A2C
with λ-returns, the optimiser's update, one jit-compiled function), and so is
the model (:meth:`ShrdluTask.make_model`: separate policy and value networks
as one :class:`experiments.models.Model`, one parameter pytree). The trainer
keeps the seeding, checkpoints, metrics, stop handling, resume and the
curriculum state.

Data: ``sample(rng, B)`` draws each episode's lesson on the host (the
current one, or with probability ``mix`` an earlier one) and a template
``inputs [T, 1, 97]`` whose length ``T`` fixes the rollout; the boards and
goals are drawn inside the step from the trainer's per-step key. A lesson
with longer episodes gives a longer ``T``, and the step recompiles.

Curriculum (Extended Data Table 6): every ``eval_every`` updates
:meth:`ShrdluTask.evaluate` plays ``eval_episodes`` episodes of the current
lesson (actions sampled, as in training); the lesson is passed when the
chosen goals' constraints satisfied average ``>= threshold``. The final
lesson has no test.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from experiments.models import Model
from experiments.shrdlu import agent
from experiments.shrdlu import curriculum as curriculum_lib
from experiments.shrdlu import env
from experiments.tasks.base import TaskBase, global_norm

EVAL_SEED = 2 ** 31 - 1


@dataclasses.dataclass(frozen=True)
class ShrdluConfig:
  """Mini-SHRDLU: learning rule, curriculum test and rewards.

  Attributes:
    lam: λ of the advantage (Table 2: 0.5 or 0.75).
    entropy_cost: β, weight of the entropy bonus.
    threshold: constraints-satisfied fraction that passes a lesson (0.85).
    eval_episodes: episodes of the current lesson per curriculum test.
    mix: fraction of training episodes drawn from earlier lessons.
    slack: action steps beyond the minimum number of moves (ΔL = 6).
    invalid_cost: reward subtracted for an invalid move.
    undo_penalty: reward subtracted for undoing a satisfied goal.
    lessons: rows ``(goals, blocks, constraints, depth)`` of ``(low, high)``
      pairs; ``None``: Extended Data Table 6.
  """

  lam: float = 0.5
  entropy_cost: float = 0.05
  threshold: float = 0.85
  eval_episodes: int = 160
  mix: float = 0.1
  slack: int = 6
  invalid_cost: float = 0.1
  undo_penalty: float = 1.0
  lessons: Optional[Sequence[Sequence[Sequence[int]]]] = None

  def __post_init__(self):
    if not 0 <= self.lam <= 1:
      raise ValueError(f"lam must be in [0, 1], got {self.lam!r}")
    if not self.entropy_cost >= 0:
      raise ValueError(f"entropy_cost must be >= 0, got "
                       f"{self.entropy_cost!r}")
    if (isinstance(self.eval_episodes, bool)
        or not isinstance(self.eval_episodes, int) or self.eval_episodes < 1):
      raise ValueError(f"eval_episodes must be an int >= 1, got "
                       f"{self.eval_episodes!r}")
    # The curriculum and the environment check the rest, naming the field.
    curriculum_lib.Curriculum(lessons=self.lesson_list(),
                              threshold=self.threshold, mix=self.mix)
    self.env_params()

  def lesson_list(self) -> Tuple[env.Lesson, ...]:
    if self.lessons is None:
      return curriculum_lib.LESSONS
    return tuple(env.Lesson(*(tuple(pair) for pair in row))
                 for row in self.lessons)

  def env_params(self) -> env.EnvParams:
    return env.EnvParams(slack=self.slack, invalid_cost=self.invalid_cost,
                         undo_penalty=self.undo_penalty)


class ShrdluBatch(NamedTuple):
  """One update's episodes, before the boards are drawn.

  Attributes:
    inputs: ``float32[T, 1, 97]`` zeros: a template; ``T`` is the rollout
      length (the longest episode of lessons up to the current one).
    lessons: ``int32[B, 8]`` each episode's lesson row.
    current: ``float32[B]`` 1 for episodes of the current lesson.
    tables: the solver's tables (:func:`env.tables`, device arrays, the
      same every step): an argument of the step, not constants compiled
      into it (far slower to compile).
  """

  inputs: np.ndarray
  lessons: np.ndarray
  current: np.ndarray
  tables: Dict[str, jax.Array]


class ShrdluTask(TaskBase):
  """The Mini-SHRDLU curriculum; see the module docstring."""

  name = "shrdlu"
  input_size = env.OBS_SIZE
  output_size = agent.OUTPUT_SIZE

  def __init__(self, config: ShrdluConfig = ShrdluConfig()):
    self.config = config
    self.lessons = config.lesson_list()
    self.table = curriculum_lib.lesson_table(self.lessons)
    self.env_params = config.env_params()
    self.lesson = 0
    self.history: List[Dict[str, Any]] = []
    self.model: Optional[Model] = None
    self._evaluators: Dict[int, Any] = {}
    self._evaluated_at = 0
    self._tables: Optional[Dict[str, jax.Array]] = None

  def tables(self) -> Dict[str, jax.Array]:
    """:func:`env.tables` on the device, made once."""
    if self._tables is None:
      self._tables = env.tables()
    return self._tables

  # --- Model and step. ----------------------------------------------------

  def make_model(self, model_config: Dict[str, Any]) -> Model:
    """Policy and value networks, one pytree (:func:`agent.make_model`)."""
    self.model = agent.make_model(model_config)
    self._evaluators = {}
    return self.model

  def steps(self, lesson: Optional[int] = None) -> int:
    """The rollout length ``T`` while ``lesson`` (default: the current) is
    trained."""
    return agent.episode_steps(self.lessons,
                               self.lesson if lesson is None else lesson,
                               self.env_params)

  def sample(self, rng: np.random.Generator, batch_size: int) -> ShrdluBatch:
    ids = np.full(batch_size, self.lesson, np.int64)
    if self.lesson > 0:
      earlier = rng.random(batch_size) < self.config.mix
      ids[earlier] = rng.integers(0, self.lesson, int(earlier.sum()))
    return ShrdluBatch(
        inputs=np.zeros((self.steps(), 1, env.OBS_SIZE), np.float32),
        lessons=self.table[ids].astype(np.int32),
        current=(ids == self.lesson).astype(np.float32),
        tables=self.tables())

  def make_train_step(self, model: Model, optimizer):
    """Rollout, A2C losses and ``optimizer``'s update, one function."""
    self.model = model
    config, env_params = self.config, self.env_params

    def loss_fn(params, batch, key):
      steps, size = batch.inputs.shape[0], batch.lessons.shape[0]
      final, traj = agent.rollout(model.core, params, key, batch.lessons,
                                  batch.tables, steps, env_params)
      loss, metrics = agent.a2c_loss(traj, size, config.lam,
                                     config.entropy_cost)
      metrics.update(_outcomes(final, batch.current))
      return loss, metrics

    def step(state, batch, key):
      (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(
          state.params, batch, key)
      updates, opt_state = optimizer.update(grads, state.opt_state,
                                            state.params)
      params = optax.apply_updates(state.params, updates)
      metrics.update(loss=loss, grad_norm=global_norm(grads))
      return state._replace(params=params, opt_state=opt_state), metrics

    return step

  # --- Evaluation and curriculum. -----------------------------------------

  def play(self, params, key, lesson: int, episodes: int) -> Dict[str, float]:
    """``perfect``, ``success``, ``incomplete``, ``fraction`` over
    ``episodes`` episodes of ``lesson`` (0-based), actions sampled."""
    if self.model is None:
      raise ValueError("make_model first: the task has no model")
    steps = self.steps(lesson)
    if steps not in self._evaluators:
      self._evaluators[steps] = jax.jit(
          lambda params, key, rows, tables: _play(
              self.model.core, params, key, rows, tables, steps,
              self.env_params))
    rows = np.repeat(self.table[lesson:lesson + 1], episodes, axis=0)
    outcome, fraction = jax.device_get(self._evaluators[steps](
        params, key, jnp.asarray(rows), self.tables()))
    return dict(perfect=float(np.mean(outcome == env.PERFECT)),
                success=float(np.mean(outcome == env.SUCCESS)),
                incomplete=float(np.mean(outcome == env.INCOMPLETE)),
                fraction=float(np.mean(fraction)))

  def evaluate(self, predict, params, step: int) -> Dict[str, float]:
    """The curriculum test: the current lesson, ``eval_episodes`` episodes
    (the key depends on ``step`` only, so a resumed run repeats it)."""
    del predict  # Closed loop: the episodes run on the model's core.
    self._evaluated_at = step
    key = jax.random.fold_in(jax.random.PRNGKey(EVAL_SEED), step)
    results = self.play(params, key, self.lesson, self.config.eval_episodes)
    results["lesson"] = self.lesson + 1
    return {f"valid/{k}": v for k, v in results.items()}

  def curriculum_state(self) -> Dict[str, Any]:
    return {"lesson": self.lesson, "history": list(self.history)}

  def restore_curriculum(self, state: Dict[str, Any]) -> None:
    lesson = int(state.get("lesson", 0))
    if not 0 <= lesson < len(self.lessons):
      raise ValueError(f"curriculum lesson {lesson} is not among the "
                       f"{len(self.lessons)} lessons")
    self.lesson = lesson
    self.history = [dict(h) for h in state.get("history", [])]

  def after_evaluation(self, results: Dict[str, float]) -> Dict[str, Any]:
    score = results.get("valid/fraction")
    if (score is None or self.lesson == len(self.lessons) - 1
        or score < self.config.threshold):
      return {}
    self.history.append({"lesson": self.lesson + 1,
                         "step": self._evaluated_at, "score": score})
    self.lesson += 1
    return {"passed": self.lesson, "lesson": self.lesson + 1,
            "score": score}


def _outcomes(final: env.State, current: jax.Array) -> Dict[str, jax.Array]:
  """Means over the current lesson's episodes of a batch. ``other``:
  :func:`env.other_fraction_satisfied`, so ``fraction - other`` gauges how
  well the agent binds the cue's letter to its goal."""
  fraction = jax.vmap(env.fraction_satisfied)(final)
  other = jax.vmap(env.other_fraction_satisfied)(final)
  perfect = (jax.vmap(env.outcome)(final) == env.PERFECT).astype(jnp.float32)
  count = jnp.maximum(current.sum(), 1.0)
  return dict(fraction=jnp.sum(fraction * current) / count,
              other=jnp.sum(other * current) / count,
              perfect=jnp.sum(perfect * current) / count)


def _play(core, params, key, rows, tables, steps, env_params):
  final, _ = agent.rollout(core, params, key, rows, tables, steps,
                           env_params)
  return jax.vmap(env.outcome)(final), jax.vmap(env.fraction_satisfied)(final)


def validate(settings: Dict[str, Any]) -> None:
  """Builds the task and network configs of ``settings``; raises
  ``ValueError`` naming the first bad one."""
  ShrdluConfig(**settings["task"])
  agent.network_configs(settings["model"])


_MODEL = {"kind": "dnc", "controller": "lstm", "hidden_size": 128,
          "num_layers": 1, "memory_size": 16, "word_size": 16, "num_reads": 2,
          "controller_grad_clip": 10.0}
_OPTIMIZER = {"name": "rmsprop", "learning_rate": 3e-4, "decay": 0.99,
              "epsilon": 1e-5, "max_grad_norm": 1000.0}
_LOOP = {"steps": 20000, "batch_size": 32, "log_every": 10, "eval_every": 20,
         "checkpoint_every": 100}
# The CPU presets' learning: of the runs in experiments/shrdlu/README.md
# ("Four recipes from scratch") the fastest on lesson 1 per update and per
# second. Adam 3e-3 on 256 episodes an update reached in 3 k updates what
# the others (Adam or RMSProp 1e-3 on 128) reached in 10 k or never;
# entropy cost 0.1 keeps the policy from settling in the first thousand
# updates, as it did at 0.05.
_CPU_TASK = {"entropy_cost": 0.1}
_CPU_OPTIMIZER = dict(_OPTIMIZER, name="adam", learning_rate=3e-3)
_CPU_LOOP = dict(_LOOP, steps=200_000, batch_size=256, eval_every=100)

PRESETS: Dict[str, Dict[str, Any]] = {
    # Small enough for a CPU: 128-unit controller, 16 x 16 memory.
    "cpu": {"task": dict(_CPU_TASK), "model": dict(_MODEL),
            "optimizer": dict(_CPU_OPTIMIZER), "loop": dict(_CPU_LOOP)},
    # Table 2, "Figure 5 DNC": 2 x 250 controller, 32 x 100, 2 reads,
    # λ 0.5, β 0.5, RMSProp 3e-5, batch 32; tested every 400 batches.
    "paper": {"task": {"entropy_cost": 0.5},
              "model": dict(_MODEL, controller="deep_lstm", hidden_size=250,
                            num_layers=2, memory_size=32, word_size=100),
              "optimizer": dict(_OPTIMIZER, learning_rate=3e-5),
              "loop": dict(_LOOP, steps=1_000_000, eval_every=400,
                           log_every=100, checkpoint_every=1000)},
    # Table 2, "Fig 4a LSTM" at CPU size: 2 x 128 LSTMs, linear heads, the
    # cpu preset's learning.
    "lstm": {"task": dict(_CPU_TASK), "model": {"kind": "lstm",
                                                "hidden_size": 128,
                                                "num_layers": 2},
             "optimizer": dict(_CPU_OPTIMIZER), "loop": dict(_CPU_LOOP)},
}
