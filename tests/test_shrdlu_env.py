"""Mini-SHRDLU environment: moves, relations, rewards, ends, errors, and
jit + vmap against the independent reference (test_shrdlu_reference.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.shrdlu import curriculum
from experiments.shrdlu import env
from experiments.shrdlu import solver
import test_shrdlu_reference as ref

ABOVE, BELOW, LEFT, RIGHT = range(4)
STEP = jax.jit(env.step)
BOARD = [[1, 2, 0], [3, 0, 0], [0, 0, 0]]  # [column][height]


def _acting(board, goal, **kwargs):
  """A state at the go step (presentation already run)."""
  state = env.make_state(board, [goal], **kwargs)
  for _ in range(int(state.num_present)):
    state, _, reward, _ = STEP(state, 0)
    assert float(reward) == 0.0
  return state


def test_legal_and_illegal_moves_and_gravity():
  board = jnp.asarray(BOARD, jnp.int32)
  new, valid = env.move(board, 2)  # column 1 -> 0: 3 lands on 2.
  assert bool(valid)
  np.testing.assert_array_equal(new, [[1, 2, 3], [0, 0, 0], [0, 0, 0]])
  new, valid = env.move(board, 1)  # column 0 -> 2: 2 falls to the bottom.
  np.testing.assert_array_equal(new, [[1, 0, 0], [3, 0, 0], [2, 0, 0]])
  new, valid = env.move(board, 4)  # from empty column 2: invalid.
  assert not bool(valid)
  np.testing.assert_array_equal(new, board)
  full = jnp.asarray([[1, 2, 3], [4, 0, 0], [0, 0, 0]], jnp.int32)
  new, valid = env.move(full, 2)  # onto a full column: invalid.
  assert not bool(valid)
  np.testing.assert_array_equal(new, full)
  new, valid = env.move(board, solver.PASS)
  assert bool(valid)
  np.testing.assert_array_equal(new, board)


@pytest.mark.parametrize("constraint,expected", [
    ((2, ABOVE, 1), True), ((1, ABOVE, 2), False), ((1, BELOW, 2), True),
    ((2, BELOW, 1), False), ((1, LEFT, 3), True), ((3, LEFT, 1), False),
    ((3, RIGHT, 1), True), ((1, RIGHT, 3), False),
    ((2, LEFT, 3), False),   # diagonal: not adjacent.
    ((2, ABOVE, 4), False),  # block 4 is not on the board.
])
def test_each_relation(constraint, expected):
  board = jnp.asarray(BOARD, jnp.int32)
  got = env.constraints_satisfied(board, jnp.asarray([constraint]), 1)
  assert int(got) == int(expected)
  assert solver.satisfied(np.asarray(BOARD), constraint) == expected


def test_far_relations_are_not_adjacent():
  board = jnp.asarray([[1, 0, 0], [0, 0, 0], [2, 0, 0]], jnp.int32)
  assert int(env.constraints_satisfied(board, jnp.asarray([[1, LEFT, 2]]),
                                       1)) == 0
  board = jnp.asarray([[1, 2, 3], [0, 0, 0], [0, 0, 0]], jnp.int32)
  assert int(env.constraints_satisfied(board, jnp.asarray([[3, ABOVE, 1]]),
                                       1)) == 0


def test_rewards_and_termination():
  params = env.EnvParams()
  state = _acting(BOARD, [(3, ABOVE, 2), (1, BELOW, 2)])  # L = 1.
  assert int(state.min_moves) == 1 and int(state.num_present) == 2
  state, _, r, done = STEP(state, 2)  # 3 onto 2: both constraints.
  assert float(r) == 2.0 and not bool(done) and int(state.solved_at) == 1
  state, _, r, _ = STEP(state, 4)  # from empty column 2: invalid.
  assert float(r) == pytest.approx(2.0 - params.invalid_cost)
  state, _, r, _ = STEP(state, 0)  # 3 to column 1: goal undone.
  assert float(r) == pytest.approx(1.0 - params.undo_penalty)
  state, _, r, _ = STEP(state, 6)  # pass: no penalty.
  assert float(r) == 1.0
  rewards = [float(r)]
  for _ in range(3):  # 1 + 6 action steps in all.
    state, _, r, done = STEP(state, 6)
    rewards.append(float(r))
  assert bool(done) and int(state.t) == 2 + 1 + params.slack
  assert int(env.outcome(state)) == env.INCOMPLETE
  frozen = state
  state, obs, r, done = STEP(state, 2)  # after the end: nothing happens.
  assert bool(done) and float(r) == 0.0
  np.testing.assert_array_equal(state.board, frozen.board)
  assert int(state.t) == int(frozen.t)


def test_outcomes():
  state = _acting(BOARD, [(3, ABOVE, 2)])
  state, *_ = STEP(state, 2)
  for _ in range(6):
    state, *_ = STEP(state, 6)
  assert bool(state.done) and int(env.outcome(state)) == env.PERFECT
  state = _acting(BOARD, [(3, ABOVE, 2)])
  for action in (3, 4) + (6,) * 5:  # 3 to column 2, then onto 2.
    state, *_ = STEP(state, action)
  assert bool(state.done) and int(env.outcome(state)) == env.SUCCESS


def test_observation_layout():
  state = env.make_state(BOARD, [[(2, ABOVE, 1)], [(3, RIGHT, 1)]],
                         chosen=1, letters=[0, 25])
  obs = np.asarray(env.observe(state))
  assert obs.shape == (97,) == (env.OBS_SIZE,)
  assert obs[0] == 1 and obs[26 + 1] == 1 and obs[32 + ABOVE] == 1
  assert obs[36 + 0] == 1 and obs[42] == 0
  # Board: square 3 * height + column, from the bottom-left.
  assert obs[43 + 0 * 6 + 0] == 1   # block 1 bottom-left.
  assert obs[43 + 1 * 6 + 2] == 1   # block 3 bottom-centre.
  assert obs[43 + 3 * 6 + 1] == 1   # block 2 left, height 1.
  assert obs[43:].sum() == 3 and obs.sum() == 4 + 3
  state, obs, *_ = STEP(state, 0)
  state, obs, *_ = STEP(state, 0)  # go step: letter Z, cue on.
  obs = np.asarray(obs)
  assert obs[25] == 1 and obs[42] == 1 and obs[:42].sum() == 1
  state, obs, *_ = STEP(state, 6)  # cue stays on, letter does not.
  obs = np.asarray(obs)
  assert obs[42] == 1 and obs[:42].sum() == 0


@pytest.fixture(scope="module")
def batch():
  """256 episodes of random lessons (one reset compile for the module)."""
  rng = np.random.default_rng(0)
  lessons = rng.integers(0, len(curriculum.LESSONS), 256)
  rows = curriculum.lesson_table(curriculum.LESSONS)[lessons]
  state, obs = jax.jit(env.batch_reset)(
      jax.random.split(jax.random.PRNGKey(1), len(lessons)),
      jnp.asarray(rows), env.tables())
  return lessons, state, obs


def test_step_under_jit_and_vmap_equals_reference(batch):
  _, state, obs = batch
  size = len(obs)
  rng = np.random.default_rng(1)
  eps = [ref.from_state(state, i) for i in range(size)]
  for i in range(size):
    np.testing.assert_array_equal(obs[i], ref.observe(eps[i]))
  step = jax.jit(env.batch_step)
  steps = 0
  while not all(e["done"] for e in eps):
    # Random actions, also during presentation (where they are ignored).
    actions = rng.integers(0, 7, size)
    state, obs, reward, done = step(state, jnp.asarray(actions, jnp.int32))
    obs, reward, done = (np.asarray(x) for x in (obs, reward, done))
    for i in range(size):
      if eps[i]["done"] and done[i]:
        continue
      eps[i], o, r, d = ref.step(eps[i], int(actions[i]))
      np.testing.assert_array_equal(obs[i], o)
      assert reward[i] == pytest.approx(r, abs=1e-6), (i, steps)
      assert done[i] == d
    steps += 1
  assert steps > 20
  final = [ref.from_state(state, i) for i in range(size)]
  for mine, theirs in zip(final, eps):
    assert mine == theirs


def test_reset_goals_follow_the_rules(batch):
  lessons, state, _ = batch
  for i in range(0, len(lessons), 4):
    lesson = curriculum.LESSONS[lessons[i]]
    ep = ref.from_state(state, i)
    goals = ep["goals"]
    assert lesson.goals[0] <= len(goals) <= lesson.goals[1]
    assert sum(len(g) for g in goals) == ep["present"]
    assert len(set(ep["letters"][:len(goals)])) == len(goals)
    assert lesson.blocks[0] <= sum(map(len, ep["columns"])) <= lesson.blocks[1]
    for goal in goals:
      assert 1 <= len(goal) <= lesson.constraints[1]
      for c in goal:  # Pruned: none already true at the start.
        assert not ref.holds(ep["columns"], c)
    board = np.asarray(state.board[i])
    assert solver.min_moves(board, goals[ep["chosen"]]) == ep["minimum"]
    assert 1 <= ep["minimum"] <= lesson.depth[1]


def test_bad_configs_name_the_field():
  with pytest.raises(ValueError, match="blocks"):
    env.Lesson(goals=(1, 1), blocks=(3, 10), constraints=(1, 1), depth=(1, 1))
  with pytest.raises(ValueError, match="depth"):
    env.Lesson(goals=(1, 1), blocks=(3, 3), constraints=(1, 1), depth=(2, 1))
  with pytest.raises(ValueError, match=r"goals\[0\]\[1\]"):
    env.make_state(BOARD, [[(1, ABOVE, 2), (5, LEFT, 1)]])
  with pytest.raises(ValueError, match="board"):
    env.make_state([[1, 0, 2], [0, 0, 0], [0, 0, 0]], [[(1, ABOVE, 2)]])
  with pytest.raises(ValueError, match="board"):
    env.make_state([[1, 2, 3], [4, 5, 6], [7, 0, 0]], [[(1, ABOVE, 2)]])
  with pytest.raises(ValueError, match="slack"):
    env.EnvParams(slack=-1)


def test_other_goal_scores_the_goal_the_cue_did_not_name():
  # Block 1 on block 2 in column 0, block 3 alone in column 1.
  board = [[2, 1, 0], [3, 0, 0], [0, 0, 0]]
  # Goal 0 "1 above 2" holds; goal 1 "3 above 1" does not; goal 2 "2 left
  # of 3" holds (same height, adjacent columns).
  goals = [[(1, 0, 2)], [(3, 0, 1)], [(2, 2, 3)]]
  scores = []
  for chosen in range(3):
    state = env.make_state(board, goals, chosen=chosen)
    scores.append((float(env.fraction_satisfied(state)),
                   float(env.other_fraction_satisfied(state))))
  # The other goal of goal g is goal g + 1, wrapping round to goal 0.
  assert scores == [(1.0, 0.0), (0.0, 1.0), (1.0, 1.0)]
  # With one goal shown the other goal is that goal.
  state = env.make_state(board, goals[1:2])
  assert int(env.other_goal(state).chosen) == 0
  assert float(env.other_fraction_satisfied(state)) == float(
      env.fraction_satisfied(state)) == 0.0
