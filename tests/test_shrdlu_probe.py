"""The Mini-SHRDLU probes: the one-move teacher against the plain-Python
solver, the random baseline, and supervised cloning that can learn."""

import io

import jax
import numpy as np
import pytest

from experiments.shrdlu import env
from experiments.shrdlu import probe
from experiments.shrdlu import solver
from experiments.shrdlu.curriculum import lesson_table


def test_solving_moves_agree_with_the_python_solver():
  rng = np.random.default_rng(0)
  tables = env.tables()
  rows = np.repeat(lesson_table([probe.one_move_lesson(2)]), 64, 0)
  # Jitted: op by op, the vmapped reset alone takes four times as long.
  states, _ = jax.jit(env.batch_reset)(
      jax.random.split(jax.random.PRNGKey(3), 64), rows, tables)
  moves = np.asarray(jax.jit(jax.vmap(probe.solving_moves))(states))
  teacher = np.asarray(jax.jit(jax.vmap(probe.teacher_action))(states))
  for i in rng.permutation(64)[:32]:
    state = jax.tree_util.tree_map(lambda x: np.asarray(x[i]), states)
    goal = state.goals[state.chosen][:state.goal_sizes[state.chosen]]
    expected = []
    for action in range(env.NUM_ACTIONS):
      board, valid = solver.apply_move(state.board, action)
      expected.append(bool(valid) and all(solver.satisfied(board, c)
                                          for c in goal))
    np.testing.assert_array_equal(moves[i], expected)
    # Lesson 1's goals are one move away and not yet true: the teacher
    # moves, and its move solves.
    assert teacher[i] != solver.PASS and expected[teacher[i]]


def test_teacher_passes_once_the_goal_holds():
  # Block 1 on block 2 in column 0: "1 above 2" holds; moving 3 keeps it.
  state = env.make_state([[2, 1, 0], [3, 0, 0], [0, 0, 0]], [[(1, 0, 2)]])
  assert bool(probe.solving_moves(state)[solver.PASS])
  assert int(probe.teacher_action(state)) == solver.PASS
  # "2 above 3": column 0 -> 1 puts 1 on 3, not 2; no single move solves.
  state = env.make_state([[2, 1, 0], [3, 0, 0], [0, 0, 0]], [[(2, 0, 3)]])
  assert not np.asarray(probe.solving_moves(state)).any()


@pytest.mark.slow  # Compiles a second rollout (~40 s on 2 cores).
def test_random_policy_is_a_baseline_of_the_right_size():
  result = probe.random_policy(jax.random.PRNGKey(0), probe.one_move_lesson(1),
                               200, env.tables())
  assert result["fraction"].shape == (200,)
  # Seven random moves reach a one-move goal often, keep it rarely.
  assert 0.3 < result["reached"].mean() < 0.8
  assert 0.05 < result["fraction"].mean() < result["reached"].mean()


@pytest.mark.slow  # 700 updates (~50 s on 2 cores).
def test_cloning_with_the_constraint_in_view_learns_the_move():
  out = io.StringIO()
  log = probe.clone("mlp", seconds=600, batch=128, max_updates=700,
                    log_every=350, out=out)
  assert [row["update"] for row in log] == [350, 700]
  assert log[0]["first_move_solves"] < 0.99
  assert log[-1]["first_move_solves"] > 0.9
  assert "first move solves" in out.getvalue()


def test_hide_constraints_zeroes_exactly_the_constraint_fields():
  rows = np.repeat(lesson_table([probe.one_move_lesson(2)]), 4, 0)
  _, obs = jax.jit(env.batch_reset)(
      jax.random.split(jax.random.PRNGKey(1), 4), rows, env.tables())
  seen = []
  core = probe.CoreModel(lambda params, batch: None,
                         lambda params, x, state: (seen.append(x), state))
  probe.hide_constraints(core).step(None, obs, None)
  hidden, obs = np.asarray(seen[0]), np.asarray(obs)
  # Written independently of the module: letter 26, first block 6,
  # relation 4, second block 6, go cue 1, board 54.
  first, last = 26, 26 + 6 + 4 + 6
  assert obs[:, first:last].any()  # a presentation step shows one
  assert not hidden[:, first:last].any()
  np.testing.assert_array_equal(hidden[:, :first], obs[:, :first])
  np.testing.assert_array_equal(hidden[:, last:], obs[:, last:])


def test_blank_memory_zeroes_the_memory_and_nothing_else():
  from experiments.tasks import shrdlu as shrdlu_task
  tiny = {"kind": "dnc", "hidden_size": 8, "memory_size": 4, "word_size": 3,
          "num_reads": 1, "controller_grad_clip": 10.0}
  task = shrdlu_task.ShrdluTask(shrdlu_task.ShrdluConfig())
  obs = np.random.default_rng(0).normal(size=(2, env.OBS_SIZE)).astype(
      np.float32)
  lstm = task.make_model({"kind": "lstm", "hidden_size": 8, "num_layers": 1})
  lstm_params = lstm.init(jax.random.PRNGKey(0), obs[None])
  assert not probe.has_memory(lstm.core.initial_state(lstm_params, 2))
  model = task.make_model(tiny)
  core, params = model.core, model.init(jax.random.PRNGKey(0), obs[None])
  state = core.initial_state(params, 2)
  for _ in range(3):  # Some steps, so the memory is no longer zero.
    _, state = core.step(params, obs, state)
  assert probe.has_memory(state)
  seen = []
  spy = probe.CoreModel(core.initial_state,
                        lambda params, x, state: (seen.append(state), state))
  probe.blank_memory(spy).step(params, obs, state)
  before = jax.tree_util.tree_flatten_with_path(state)[0]
  after = jax.tree_util.tree_leaves(seen[0])
  # The policy's and the value network's memories ([B, N, W] = [2, 4, 3]).
  memories = [i for i, (path, _) in enumerate(before)
              if "memory" in jax.tree_util.keystr(path)]
  assert len(memories) == 2
  for i, ((_, leaf), blanked) in enumerate(zip(before, after)):
    if i in memories:
      assert np.shape(leaf) == (2, 4, 3) and np.any(leaf)
      assert not np.any(blanked)
    else:
      np.testing.assert_array_equal(blanked, leaf)


def test_clone_rejects_an_unknown_model():
  with pytest.raises(ValueError, match="model must be 'dnc' or 'mlp'"):
    probe.clone("transformer", seconds=1)


@pytest.mark.parametrize("model,goals,message", [
    ("mlp", 2, "goals: the mlp clone sees one goal"),
    ("dnc", 0, "goals must be 1..10"),
    ("dnc", 11, "goals must be 1..10")])
def test_clone_rejects_goal_counts_it_cannot_play(model, goals, message):
  with pytest.raises(ValueError, match=message):
    probe.clone(model, seconds=1, goals=goals)


@pytest.mark.slow  # 2,000 updates (~60 s on 2 cores).
def test_the_rl_recipe_learns_the_move_when_nothing_must_be_recalled():
  out = io.StringIO()
  log = probe.rl_without_memory(seconds=600, batch=128, entropy_cost=0.2,
                                max_updates=2000, log_every=500, out=out)
  assert [row["update"] for row in log] == [500, 1000, 1500, 2000]
  # A random policy keeps ~0.2 of one-move goals (the baseline above);
  # one batch of 128 episodes is a noisy figure, hence the wide margins.
  assert log[0]["satisfied"] < 0.35
  assert log[-1]["satisfied"] > 0.4
  assert all(np.isfinite(row["value_loss"]) for row in log)
  assert "satisfied" in out.getvalue()


@pytest.mark.parametrize("argv", [["--seconds", "0"], ["--goals", "4"],
                                  ["--batch-size", "0"]])
def test_rl_probe_rejects_bad_arguments(argv, capsys):
  with pytest.raises(SystemExit) as exit_info:
    probe.main(["rl"] + argv)
  assert exit_info.value.code == 2
  assert "--goals 1..3" in capsys.readouterr().err
