"""Mini-SHRDLU (Graves et al. 2016, Methods): a pure, jit-able environment.

One environment is a pytree :class:`State`; ``reset`` and ``step`` act on one
board and are meant to be ``jax.vmap``-ed (see :func:`batch_reset`,
:func:`batch_step`). Every array has a fixed shape, so thousands of boards
run in one jit-compiled call.

Episode (time-steps ``t = 0, 1, ...``):

1. **Presentation**: the constraints of goal 0, then goal 1, ... one per
   step: ``(goal letter, first block, relation, second block)`` and the
   board. Actions are ignored, reward 0.
2. **Go cue**: at ``t = n_present`` the chosen goal's letter is sent (that
   step only) and the go flag turns on (and stays on until the end); the
   agent acts from this step on.
3. **Acting**: ``L + slack`` action steps, ``L`` = the minimum number of
   moves satisfying the chosen goal, ``slack`` = 6. No early end.

Observation (``float32[97]``, PROTOCOL §2.3): goal letter one-hot (26),
first block (6), relation (4: above, below, left of, right of), second block
(6), go flag (1), board (9 squares x 6, square ``3 * row + column`` from the
bottom-left, row-major upwards; zeros if empty).

Reward on each action step: the number of the chosen goal's constraints
satisfied after the move, minus ``invalid_cost`` for an invalid move (taking
from an empty column, or putting onto a full one: the board is unchanged),
minus ``undo_penalty`` when the goal was satisfied before the move and is not
after it. See README.md (Mini-SHRDLU choices) for every choice.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from experiments.shrdlu import solver

SIZE = solver.SIZE
MAX_BLOCKS = solver.MAX_BLOCKS
MAX_GOALS = 10
MAX_CONSTRAINTS = 6
NUM_LETTERS = 26
NUM_RELATIONS = 4
NUM_ACTIONS = solver.NUM_ACTIONS
OBS_SIZE = NUM_LETTERS + MAX_BLOCKS + NUM_RELATIONS + MAX_BLOCKS + 1 + (
    SIZE * SIZE * MAX_BLOCKS)  # 97
MAX_DEPTH = 7
# Candidate target boards drawn per goal; the first that leaves at least one
# constraint not already true on the start board is used.
_CANDIDATES = 16


@dataclasses.dataclass(frozen=True)
class EnvParams:
  """Static settings (hashable, so usable as a jit static argument).

  Attributes:
    slack: extra moves beyond the minimum (the paper's ΔL = 6).
    invalid_cost: reward subtracted for an invalid move (paper: "small").
    undo_penalty: reward subtracted when a move undoes a satisfied goal.
  """
  slack: int = 6
  invalid_cost: float = 0.1
  undo_penalty: float = 1.0

  def __post_init__(self):
    if not isinstance(self.slack, int) or self.slack < 0:
      raise ValueError(f"slack must be an int >= 0, got {self.slack!r}")
    for name in ("invalid_cost", "undo_penalty"):
      if getattr(self, name) < 0:
        raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")


@dataclasses.dataclass(frozen=True)
class Lesson:
  """One row of Extended Data Table 6: inclusive ``(low, high)`` ranges.

  Attributes:
    goals: goals per episode (1..10).
    blocks: blocks on the board (1..6: the ids are 1..6; a 3x3 board has 9
      cells).
    constraints: constraints sampled per goal (1..6).
    depth: minimum moves from the start board to each goal's target board
      (1..7); clipped to the farthest board when the start has none that far.
  """
  goals: Tuple[int, int]
  blocks: Tuple[int, int]
  constraints: Tuple[int, int]
  depth: Tuple[int, int]

  _LIMITS = {"goals": (1, MAX_GOALS), "blocks": (1, MAX_BLOCKS),
             "constraints": (1, MAX_CONSTRAINTS), "depth": (1, MAX_DEPTH)}

  def __post_init__(self):
    for name, (low, high) in self._LIMITS.items():
      value = tuple(getattr(self, name))
      if (len(value) != 2 or not all(isinstance(v, (int, np.integer))
                                     for v in value)):
        raise ValueError(f"Lesson.{name} must be a (low, high) pair of ints, "
                         f"got {value!r}")
      if not low <= value[0] <= value[1] <= high:
        extra = (" (a 3x3 board has 9 cells and block ids are 1..6)"
                 if name == "blocks" else "")
        raise ValueError(f"Lesson.{name} must satisfy {low} <= low <= high "
                         f"<= {high}{extra}, got {value!r}")
      object.__setattr__(self, name, (int(value[0]), int(value[1])))

  def as_array(self) -> np.ndarray:
    """``int32[8]``: goals, blocks, constraints, depth ranges."""
    return np.array(self.goals + self.blocks + self.constraints + self.depth,
                    np.int32)

  @property
  def max_steps(self) -> int:
    """Longest episode of this lesson without slack: presentation + L."""
    return self.goals[1] * self.constraints[1] + 1 + self.depth[1]


class State(NamedTuple):
  """One board's episode. ``G = 10`` goals, ``C = 6`` constraints.

  Attributes:
    board: ``int32[3, 3]`` ``[column, height]``, block ids 1..6, 0 = empty.
    goals: ``int32[G, C, 3]`` ``(first block, relation, second block)``.
    goal_sizes: ``int32[G]`` constraints per goal (0 for absent goals).
    letters: ``int32[G]`` letter of each goal, 0 = A .. 25 = Z, distinct.
    num_goals: ``int32[]``.
    chosen: ``int32[]`` the goal named by the go cue.
    num_present: ``int32[]`` presentation steps (sum of ``goal_sizes``).
    min_moves: ``int32[]`` ``L`` for the chosen goal.
    t: ``int32[]`` time-step.
    moves: ``int32[]`` valid block moves made so far.
    solved_at: ``int32[]`` ``moves`` when the goal was first satisfied
      (-1 while never).
    was_solved: ``bool[]`` goal satisfied after the previous action.
    done: ``bool[]``.
  """
  board: jax.Array
  goals: jax.Array
  goal_sizes: jax.Array
  letters: jax.Array
  num_goals: jax.Array
  chosen: jax.Array
  num_present: jax.Array
  min_moves: jax.Array
  t: jax.Array
  moves: jax.Array
  solved_at: jax.Array
  was_solved: jax.Array
  done: jax.Array


def _i32(x):
  return jnp.asarray(x, jnp.int32)


_RESET_TABLES = ("boards", "positions", "profile_boards", "max_dist",
                 "by_dist", "by_dist_count", "near", "near_dist")


def tables() -> dict:
  """The solver's tables ``reset`` needs, as arrays (about 2 MB).

  Pass them to ``reset`` as an argument of the jitted function: closed over,
  they would be compiled in as constants (slow to compile).
  """
  t = solver.tables()
  return {k: jnp.asarray(t[k]) for k in _RESET_TABLES}


# Where each block count's height profiles start in the profile list.
def _profile_ranges():
  counts = np.bincount(solver.tables()["profiles"].sum(axis=1),
                       minlength=MAX_BLOCKS + 1)
  return np.concatenate([[0], np.cumsum(counts)[:-1]]), counts


def positions(board: jax.Array) -> Tuple[jax.Array, jax.Array]:
  """``(column, height)`` of block ids 0..6, each ``int32[7]`` (-1: absent)."""
  ids = jnp.arange(MAX_BLOCKS + 1, dtype=jnp.int32)
  eq = board[None, :, :] == ids[:, None, None]  # [7, col, row]
  present = eq.any(axis=(1, 2)) & (ids > 0)
  col = jnp.sum(eq * jnp.arange(SIZE, dtype=jnp.int32)[None, :, None],
                axis=(1, 2), dtype=jnp.int32)
  row = jnp.sum(eq * jnp.arange(SIZE, dtype=jnp.int32)[None, None, :],
                axis=(1, 2), dtype=jnp.int32)
  return jnp.where(present, col, -1), jnp.where(present, row, -1)


def _holds(col, row, constraints):
  """``bool[...]``: each ``(a, rel, b)`` under adjacency semantics."""
  a, rel, b = constraints[..., 0], constraints[..., 1], constraints[..., 2]
  ca, ra, cb, rb = col[a], row[a], col[b], row[b]
  present = (ca >= 0) & (cb >= 0) & (a > 0) & (b > 0)
  same_col, same_row = ca == cb, ra == rb
  ok = jnp.select(
      [rel == solver.ABOVE, rel == solver.BELOW, rel == solver.LEFT,
       rel == solver.RIGHT],
      [same_col & (ra == rb + 1), same_col & (ra == rb - 1),
       same_row & (ca == cb - 1), same_row & (ca == cb + 1)], False)
  return present & ok


def constraints_satisfied(board: jax.Array, constraints: jax.Array,
                          size: jax.Array) -> jax.Array:
  """Number of the first ``size`` of ``constraints [C, 3]`` true on board."""
  col, row = positions(board)
  holds = _holds(col, row, constraints)
  mask = jnp.arange(constraints.shape[0]) < size
  return jnp.sum(holds & mask, dtype=jnp.int32)


def _constraint_slots(board, flip):
  """The 12 adjacency constraints a board can hold: ``int32[12, 3]`` + valid.

  Slots 0..5: vertical pairs (column c, heights r and r + 1) as
  "upper above lower" or, where ``flip``, "lower below upper". Slots 6..11:
  horizontal pairs (height r, columns c and c + 1) as "left left-of right"
  or "right right-of left". One constraint per adjacent pair: the pruning of
  redundant converse pairs.
  """
  up = board[:, 1:].reshape(-1)   # [col, r + 1]
  low = board[:, :-1].reshape(-1)
  left = board[:-1, :].T.reshape(-1)  # [row, c]
  right = board[1:, :].T.reshape(-1)
  fv, fh = flip[:6], flip[6:]
  vert = jnp.stack([jnp.where(fv, low, up),
                    jnp.where(fv, solver.BELOW, solver.ABOVE),
                    jnp.where(fv, up, low)], -1)
  horiz = jnp.stack([jnp.where(fh, right, left),
                     jnp.where(fh, solver.RIGHT, solver.LEFT),
                     jnp.where(fh, left, right)], -1)
  slots = jnp.concatenate([vert, horiz]).astype(jnp.int32)
  valid = (slots[:, 0] > 0) & (slots[:, 2] > 0)
  return slots, valid


def _fast_key(key: jax.Array) -> jax.Array:
  """An ``unsafe_rbg`` key made from ``key`` (a raw or typed threefry key).

  ``reset`` draws about twenty times; with threefry each draw inlines the
  unrolled hash rounds and the jit-compile of ``batch_reset`` takes ~4x
  longer than with XLA's ``RngBitGenerator`` (CPU, measured 43 s against
  10 s on a loaded 2-core machine). Same seed, same episodes; only the
  stream differs from threefry's.
  """
  if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
    key = jax.random.key_data(key)
  data = key.astype(jnp.uint32)
  return jax.random.wrap_key_data(
      jnp.concatenate([data, data ^ jnp.uint32(0x9E3779B9)]),
      impl="unsafe_rbg")


def reset(key: jax.Array, lesson: jax.Array, tb: dict
          ) -> Tuple[State, jax.Array]:
  """A new episode of ``lesson`` (``int32[8]``, :meth:`Lesson.as_array`).

  ``tb`` is :func:`tables` (an argument, not a constant, for fast compiles).

  The start board is uniform over the boards of ``n`` blocks (``n`` uniform
  in the lesson's range, ids a random subset of 1..6); each goal's target is
  uniform over the boards at exactly ``D`` moves (``D`` uniform in range);
  its constraints are a uniform subset of the target's adjacencies not true
  on the start board. Returns ``(state, first observation)``.
  """
  starts, counts = (jnp.asarray(x, jnp.int32) for x in _profile_ranges())
  lesson = _i32(lesson)
  k = jax.random.split(_fast_key(key), 8)

  def uniform(key, low, high):
    return jax.random.randint(key, (), low, high + 1, dtype=jnp.int32)

  n = uniform(k[0], lesson[2], lesson[3])
  profile = starts[n] + jax.random.randint(k[1], (), 0, counts[n],
                                           dtype=jnp.int32)
  start_index = tb["profile_boards"][profile]
  canon_start = tb["boards"][start_index]
  relabel = jnp.concatenate([
      jnp.zeros((1,), jnp.int32),
      jax.random.permutation(k[2], MAX_BLOCKS).astype(jnp.int32) + 1])
  num_goals = uniform(k[3], lesson[0], lesson[1])
  start_pos = tb["positions"][start_index]

  def make_goal(key):
    kd, kc, kn, kf, ko = jax.random.split(key, 5)
    depth = jnp.minimum(uniform(kd, lesson[6], lesson[7]),
                        tb["max_dist"][profile])
    count = tb["by_dist_count"][profile, depth]
    pick = jax.random.randint(kc, (_CANDIDATES,), 0, count, dtype=jnp.int32)
    targets = tb["by_dist"][profile, depth, pick]
    flips = jax.random.bernoulli(kf, 0.5, (_CANDIDATES, 12))
    slots, valid = jax.vmap(_constraint_slots)(tb["boards"][targets], flips)
    fresh = valid & ~_holds(start_pos[:, 0], start_pos[:, 1], slots)
    available = fresh.sum(axis=1)
    first = jnp.argmax(available > 0)
    slots, fresh = slots[first], fresh[first]
    size = jnp.minimum(uniform(kn, lesson[4], lesson[5]), available[first])
    order = jnp.argsort(jnp.where(fresh, jax.random.uniform(ko, (12,)), 2.0))
    chosen = slots[order[:MAX_CONSTRAINTS]]
    keep = jnp.arange(MAX_CONSTRAINTS) < size
    return jnp.where(keep[:, None], chosen, 0), size

  canon_goals, sizes = jax.vmap(make_goal)(jax.random.split(k[4], MAX_GOALS))
  present = jnp.arange(MAX_GOALS) < num_goals
  sizes = jnp.where(present, sizes, 0).astype(jnp.int32)
  canon_goals = jnp.where(present[:, None, None], canon_goals, 0)
  letters = jax.random.permutation(k[5], NUM_LETTERS)[:MAX_GOALS].astype(
      jnp.int32)
  score = jnp.where(sizes > 0, jax.random.uniform(k[6], (MAX_GOALS,)), -1.0)
  chosen = jnp.argmax(score).astype(jnp.int32)
  # L: fewest moves to any board satisfying the chosen goal (canonical ids).
  goal = canon_goals[chosen]
  # Every board within 7 moves is listed (L <= D <= 7), so this is exact.
  near, near_dist = tb["near"][profile], tb["near_dist"][profile]
  pos = tb["positions"][near]  # [K, 7, 2]
  holds = jax.vmap(lambda p: _holds(p[:, 0], p[:, 1], goal))(pos)
  ok = jnp.all(holds | (jnp.arange(MAX_CONSTRAINTS) >= sizes[chosen]), axis=1)
  min_moves = jnp.min(jnp.where(ok, near_dist, solver.UNREACHABLE))
  goals = jnp.stack([relabel[canon_goals[..., 0]], canon_goals[..., 1],
                     relabel[canon_goals[..., 2]]], -1)
  state = State(
      board=relabel[canon_start], goals=goals.astype(jnp.int32),
      goal_sizes=sizes, letters=letters, num_goals=num_goals, chosen=chosen,
      num_present=jnp.sum(sizes, dtype=jnp.int32),
      min_moves=min_moves.astype(jnp.int32), t=_i32(0), moves=_i32(0),
      solved_at=_i32(-1), was_solved=jnp.asarray(False),
      done=jnp.asarray(False))
  return state, observe(state)


def episode_length(state: State, params: EnvParams = EnvParams()):
  """Total time-steps: presentation + ``L + slack`` action steps."""
  return state.num_present + state.min_moves + params.slack


def observe(state: State) -> jax.Array:
  """``float32[97]`` observation at ``state.t`` (see module docstring)."""
  t = state.t
  presenting = t < state.num_present
  ends = jnp.cumsum(state.goal_sizes)
  goal = jnp.minimum(jnp.sum(ends <= t, dtype=jnp.int32), MAX_GOALS - 1)
  index = jnp.clip(t - (ends[goal] - state.goal_sizes[goal]), 0,
                   MAX_CONSTRAINTS - 1)
  a, rel, b = state.goals[goal, index]
  go_step = t == state.num_present
  acting = (t >= state.num_present) & ~state.done
  letter = jnp.where(presenting, state.letters[goal],
                     jnp.where(go_step & ~state.done,
                               state.letters[state.chosen], -1))

  def one_hot(i, n, on):
    return jax.nn.one_hot(jnp.where(on, i, -1), n, dtype=jnp.float32)

  board = state.board.T.reshape(-1)  # square 3 * row + column
  return jnp.concatenate([
      one_hot(letter, NUM_LETTERS, letter >= 0),
      one_hot(a - 1, MAX_BLOCKS, presenting),
      one_hot(rel, NUM_RELATIONS, presenting),
      one_hot(b - 1, MAX_BLOCKS, presenting),
      acting.astype(jnp.float32)[None],
      jax.nn.one_hot(board - 1, MAX_BLOCKS, dtype=jnp.float32).reshape(-1)])


def move(board: jax.Array, action: jax.Array) -> Tuple[jax.Array, jax.Array]:
  """``(new board, valid)``; invalid moves and pass leave the board as is."""
  moves = jnp.asarray(solver.MOVES + ((0, 0),), jnp.int32)
  src, dst = moves[action, 0], moves[action, 1]
  heights = jnp.sum(board > 0, axis=1, dtype=jnp.int32)
  is_pass = action == solver.PASS
  valid = is_pass | ((heights[src] > 0) & (heights[dst] < SIZE))
  do = valid & ~is_pass
  hs, hd = jnp.maximum(heights[src] - 1, 0), jnp.minimum(heights[dst], SIZE - 1)
  block = board[src, hs]
  moved = board.at[src, hs].set(0).at[dst, hd].set(block)
  return jnp.where(do, moved, board), valid


def step(state: State, action: jax.Array, params: EnvParams = EnvParams()
         ) -> Tuple[State, jax.Array, jax.Array, jax.Array]:
  """Applies ``action`` (0..6) -> ``(state, obs, reward, done)``.

  During presentation and after the end the action is ignored (reward 0).
  """
  action = _i32(action)
  acting = (state.t >= state.num_present) & ~state.done
  board, valid = move(state.board, action)
  board = jnp.where(acting, board, state.board)
  size = state.goal_sizes[state.chosen]
  sat = constraints_satisfied(board, state.goals[state.chosen], size)
  solved = sat == size
  moved = acting & valid & (action != solver.PASS)
  moves = state.moves + moved.astype(jnp.int32)
  undo = acting & state.was_solved & ~solved
  reward = (sat.astype(jnp.float32) - params.invalid_cost * (~valid)
            - params.undo_penalty * undo)
  reward = jnp.where(acting, reward, 0.0).astype(jnp.float32)
  t = state.t + (~state.done).astype(jnp.int32)
  done = state.done | (t >= episode_length(state, params))
  state = state._replace(
      board=board, t=jnp.where(state.done, state.t, t), moves=moves,
      solved_at=jnp.where(acting & solved & (state.solved_at < 0), moves,
                          state.solved_at),
      was_solved=jnp.where(acting, solved, state.was_solved), done=done)
  return state, observe(state), reward, done


batch_reset = jax.vmap(reset, in_axes=(0, 0, None))  # tables shared


def batch_step(state: State, action: jax.Array,
               params: EnvParams = EnvParams()):
  """:func:`step` over a batch: ``state`` leaves ``[B, ...]``, ``action``
  ``[B]``."""
  return jax.vmap(lambda s, a: step(s, a, params))(state, action)


# Outcomes (Fig. 5b), read from a finished state.
PERFECT, SUCCESS, INCOMPLETE = 0, 1, 2


def fraction_satisfied(state: State) -> jax.Array:
  """Fraction of the chosen goal's constraints true on the board now."""
  size = state.goal_sizes[state.chosen]
  sat = constraints_satisfied(state.board, state.goals[state.chosen], size)
  return jnp.where(size > 0, sat / jnp.maximum(size, 1), 1.0).astype(
      jnp.float32)


def other_goal(state: State) -> State:
  """``state`` with the go cue's choice moved to the next goal shown
  (``chosen + 1`` modulo the goals; the same goal when only one is shown).
  Scoring it asks whether the agent satisfied a goal it was not asked for:
  an agent that ignores the cue satisfies it as often as the chosen one."""
  return state._replace(chosen=(state.chosen + 1) % jnp.maximum(
      state.num_goals, 1))


def other_fraction_satisfied(state: State) -> jax.Array:
  """:func:`fraction_satisfied` of :func:`other_goal`: the share of a goal
  the agent was not asked for that is true on the board now. While the
  agent ignores which goal the go cue names, it equals
  ``fraction_satisfied`` on average; the gap measures the binding."""
  return fraction_satisfied(other_goal(state))


def outcome(state: State) -> jax.Array:
  """PERFECT (satisfied at the end, first reached after exactly ``L`` moves),
  SUCCESS (satisfied at the end, more moves), INCOMPLETE."""
  full = fraction_satisfied(state) >= 1.0
  perfect = full & (state.solved_at == state.min_moves)
  return jnp.where(perfect, PERFECT, jnp.where(full, SUCCESS, INCOMPLETE)
                   ).astype(jnp.int32)


def make_state(board, goals: Sequence[Sequence[Sequence[int]]],
               chosen: int = 0, letters: Sequence[int] = None) -> State:
  """A state from a hand-made board and goals (validated), at ``t = 0``.

  Args:
    board: ``[3][3]`` ``[column][height]`` block ids (0 = empty).
    goals: per goal, a list of ``(first block, relation, second block)``.
    chosen: the goal named by the go cue.
    letters: goal letters (default 0, 1, 2, ...).

  Raises:
    ValueError: naming the field (``board``, ``goals[g][i]``, ``chosen``,
      ``letters``) that is invalid.
  """
  board = np.asarray(board, np.int32)
  if board.shape != (SIZE, SIZE):
    raise ValueError(f"board must be 3x3 [column][height], got {board.shape}")
  ids = board[board > 0]
  if ids.size > MAX_BLOCKS or len(set(ids.tolist())) != ids.size or (
      ids.size and (ids.min() < 1 or ids.max() > MAX_BLOCKS)):
    raise ValueError(f"board must hold distinct block ids 1..{MAX_BLOCKS} "
                     f"(at most {MAX_BLOCKS} blocks), got {ids.tolist()}")
  for column in range(SIZE):
    h = np.count_nonzero(board[column])
    if np.count_nonzero(board[column, :h]) != h:
      raise ValueError(f"board: column {column} has a floating block "
                       f"(gravity: blocks stack from the bottom)")
  if not 1 <= len(goals) <= MAX_GOALS:
    raise ValueError(f"goals must hold 1..{MAX_GOALS} goals, got {len(goals)}")
  out = np.zeros((MAX_GOALS, MAX_CONSTRAINTS, 3), np.int32)
  sizes = np.zeros(MAX_GOALS, np.int32)
  for g, goal in enumerate(goals):
    if not 1 <= len(goal) <= MAX_CONSTRAINTS:
      raise ValueError(f"goals[{g}] must hold 1..{MAX_CONSTRAINTS} "
                       f"constraints, got {len(goal)}")
    for i, (a, rel, b) in enumerate(goal):
      if a not in ids or b not in ids or a == b:
        raise ValueError(f"goals[{g}][{i}] = {(a, rel, b)} names a block not "
                         f"on the board (blocks {sorted(ids.tolist())}) or "
                         f"the same block twice")
      if not 0 <= rel < NUM_RELATIONS:
        raise ValueError(f"goals[{g}][{i}]: relation must be 0..3, got {rel}")
      out[g, i] = (a, rel, b)
    sizes[g] = len(goal)
  if not 0 <= chosen < len(goals):
    raise ValueError(f"chosen must be in 0..{len(goals) - 1}, got {chosen}")
  letters = list(range(len(goals))) if letters is None else list(letters)
  if (len(letters) != len(goals) or len(set(letters)) != len(letters)
      or not all(0 <= x < NUM_LETTERS for x in letters)):
    raise ValueError(f"letters must be {len(goals)} distinct ints in 0..25, "
                     f"got {letters}")
  letters = np.array(letters + [0] * (MAX_GOALS - len(letters)), np.int32)
  minimum = solver.min_moves(board, goals[chosen])
  return State(
      board=jnp.asarray(board), goals=jnp.asarray(out),
      goal_sizes=jnp.asarray(sizes), letters=jnp.asarray(letters),
      num_goals=_i32(len(goals)), chosen=_i32(chosen),
      num_present=_i32(sizes.sum()), min_moves=_i32(minimum), t=_i32(0),
      moves=_i32(0), solved_at=_i32(0 if minimum == 0 else -1),
      was_solved=jnp.asarray(minimum == 0), done=jnp.asarray(False))
