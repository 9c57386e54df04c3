"""Graph tasks in the trainer's protocol, closed-loop step included."""

from typing import Callable, NamedTuple

import haiku as hk
import jax
import numpy as np
import optax
import pytest

from experiments.graphs import curriculum
from experiments.graphs import protocol
from experiments.graphs.curriculum import Schedule
from experiments.graphs.tasks import Lesson
from tests.test_graph_curriculum import oracle


class Core(NamedTuple):
  initial_state: Callable
  step: Callable


class Model(NamedTuple):
  init: Callable
  apply: Callable
  core: Core


class State(NamedTuple):
  params: object
  opt_state: object


def tiny_lstm() -> Model:
  def functions():
    core = hk.DeepRNN([hk.LSTM(8), hk.Linear(90)])

    def init(x):
      return core(x, core.initial_state(x.shape[0]))

    return init, (core.initial_state, core)

  multi = hk.without_apply_rng(hk.multi_transform(functions))
  initial_state, step = multi.apply
  return Model(multi.init, None, Core(initial_state, step))


TWO_LESSONS = Schedule((Lesson((4, 6), (1, 2), (2, 2)),
                        Lesson((5, 7), (1, 2), (2, 3))), 0.8, 0.0, 1, 4)


def test_shortest_path_closed_loop_step_trains_and_evaluates():
  task = protocol.make("shortest_path", schedule=TWO_LESSONS,
                       eval_batch_size=4)
  assert task.input_size == 92 and task.output_size == 90
  model = tiny_lstm()
  optimizer = optax.adam(1e-2)
  with pytest.raises(ValueError, match="make_train_step"):
    task.evaluate(None, None, 0)
  step = jax.jit(task.make_train_step(model, optimizer))
  params = model.init(jax.random.PRNGKey(0), np.zeros((1, 92), np.float32))
  state = State(params, optimizer.init(params))
  losses = []
  for s in range(3):
    batch = task.sample(np.random.default_rng([0, s]), 1)
    state, metrics = step(state, batch, jax.random.PRNGKey(s))
    losses.append(float(metrics["loss"]))
  assert np.all(np.isfinite(losses)) and losses[0] > 0
  assert 0 <= float(metrics["step_accuracy"]) <= 1
  changed = jax.tree.map(lambda a, b: float(np.abs(a - b).max()), params,
                         state.params)
  assert max(jax.tree.leaves(changed)) > 0
  results = task.evaluate(None, state.params, 3)
  assert 0 <= results["valid/accuracy"] <= 1
  assert results["valid/lesson"] == 1
  assert task.after_evaluation({"valid/accuracy": 0.79}) == {}
  assert task.after_evaluation({"valid/accuracy": 0.8})["lesson"] == 2
  assert task.curriculum_state()["lesson"] == 2


def test_open_loop_tasks_use_the_trainer_step_and_advance():
  task = protocol.make("traversal", schedule=curriculum.MINIATURE,
                       eval_batch_size=8)
  assert task.make_train_step(None, None) is None
  batch = task.sample(np.random.default_rng([0, 0]), 2)
  assert batch.inputs.shape[1:] == (2, 92)
  results = task.evaluate(lambda params, x: oracle(x), None, 3)
  assert results["valid/accuracy"] == 1.0
  # Counted by the trainer's steps: 3 steps of 2 examples.
  assert task.after_evaluation(results) == {"lesson": 2, "examples_seen": 6}
  fresh = protocol.make("traversal", schedule=curriculum.MINIATURE)
  fresh.restore_curriculum(task.curriculum_state())
  assert fresh.curriculum.lesson == 2
  with pytest.raises(ValueError, match="valid/accuracy"):
    task.after_evaluation({"valid/loss": 1.0})


def test_unknown_graph_task_raises_naming_it():
  with pytest.raises(ValueError, match="'maze'"):
    protocol.make("maze")


def test_presets_follow_extended_data_table_2():
  from experiments.graphs import presets
  # (layers, memory N, batch, learning rate), copied from Table 2.
  table = {"traversal": (3, 256, 2, 1e-5), "inference": (3, 128, 32, 1e-5),
           "shortest_path": (2, 128, 1, 3e-6)}
  for task, (layers, memory, batch, lr) in table.items():
    p = presets.preset(task, "paper")
    assert (p["model"]["num_layers"], p["model"]["memory_size"],
            p["loop"]["batch_size"], p["optimizer"]["learning_rate"]) == (
                layers, memory, batch, lr)
    assert (p["model"]["hidden_size"], p["model"]["word_size"],
            p["model"]["num_reads"]) == (256, 50, 5)
    assert set(presets.PRESETS[task]) == {"paper", "cpu", "lstm",
                                          "cpu_lstm"}
    assert presets.preset(task, "lstm")["kind"] == "lstm"
  assert presets.preset("shortest_path", "paper")["task"]["beta"] == 0.8
  with pytest.raises(ValueError, match="'huge'"):
    presets.preset("traversal", "huge")
  with pytest.raises(ValueError, match="'maze'"):
    presets.preset("maze", "paper")
