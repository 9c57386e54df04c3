"""Mini-SHRDLU solver: board counts, minimum moves against an exhaustive
search, and no random policy ever beating the minimum."""

import itertools

import numpy as np
import pytest

from experiments.shrdlu import solver
import test_shrdlu_reference as ref

ABOVE, BELOW, LEFT, RIGHT = range(4)


def test_board_counts():
  t = solver.tables()
  np.testing.assert_array_equal(np.bincount(t["num_blocks"]),
                                [1, 3, 12, 60, 288, 1440, 7200])
  assert len(t["profiles"]) == 54
  # Every board is distinct and has no floating block.
  assert len({b.tobytes() for b in t["boards"]}) == 9004
  heights = (t["boards"] > 0).sum(axis=2)
  assert ((t["boards"] > 0) == (np.arange(3) < heights[..., None])).all()
  # Moves are reversible: the distance table is that of an undirected graph.
  neighbours = t["neighbours"]
  for i in range(0, 9004, 97):
    for j in neighbours[i]:
      assert i in neighbours[j]


def _exhaustive(columns, constraints, depth):
  """Smallest k <= depth such that some sequence of k actions (all 7^k tried)
  satisfies the constraints; None if none does."""
  for k in range(depth + 1):
    for actions in itertools.product(range(7), repeat=k):
      cols = [list(c) for c in columns]
      for a in actions:
        if a < 6:
          src, dst = ref.PAIRS[a]
          if cols[src] and len(cols[dst]) < 3:
            cols[dst].append(cols[src].pop())
      if all(ref.holds(cols, c) for c in constraints):
        return k
  return None


def _board(columns):
  board = np.zeros((3, 3), np.int32)
  for c, col in enumerate(columns):
    board[c, :len(col)] = col
  return board


@pytest.mark.parametrize("columns,constraints", [
    ([[1, 2, 3], [], []], [(1, ABOVE, 3)]),
    ([[1, 2, 3], [], []], [(3, LEFT, 1)]),
    ([[1, 2], [3], []], [(1, RIGHT, 3), (2, ABOVE, 3)]),
    ([[1], [2], [3]], [(1, ABOVE, 2), (2, ABOVE, 3)]),
    ([[1, 2], [3, 4], []], [(4, BELOW, 1)]),
    ([[1, 2], [3, 4], []], [(2, LEFT, 4), (1, ABOVE, 3)]),
    ([[4, 1, 3], [2], []], [(1, RIGHT, 2), (3, BELOW, 4)]),
])
def test_min_moves_equals_exhaustive_search(columns, constraints):
  expected = _exhaustive(columns, constraints, 4)
  assert expected is not None
  assert solver.min_moves(_board(columns), constraints) == expected


def test_min_moves_matches_exhaustive_on_random_small_cases():
  rng = np.random.default_rng(0)
  t = solver.tables()
  small = np.flatnonzero((t["num_blocks"] >= 2) & (t["num_blocks"] <= 3))
  checked = 0
  for index in rng.choice(small, 40):
    board = t["boards"][index]
    columns = [[int(b) for b in col if b] for col in board]
    blocks = [b for col in columns for b in col]
    a, b = rng.choice(blocks, 2, replace=False)
    constraints = [(int(a), int(rng.integers(4)), int(b))]
    expected = _exhaustive(columns, constraints, 3)
    got = solver.min_moves(board, constraints, limit=3)
    assert got == (-1 if expected is None else expected)
    checked += expected is not None
  assert checked > 20


def test_distance_table_matches_min_moves():
  t = solver.tables()
  rng = np.random.default_rng(1)
  for p in rng.choice(len(t["profiles"]), 8):
    start = t["boards"][t["profile_boards"][p]]
    for target in rng.choice(np.flatnonzero(t["dist"][p] < 5), 4):
      goal = t["boards"][target]
      d = int(t["dist"][p, target])
      frontier = {start.tobytes()}  # Invalid moves stay: all within k.
      for k in range(d):
        assert goal.tobytes() not in frontier, k
        frontier = {solver.apply_move(np.frombuffer(f, np.int32).reshape(3, 3),
                                      a)[0].tobytes()
                    for f in frontier for a in range(6)}
      assert goal.tobytes() in frontier


def test_random_policy_never_beats_the_minimum():
  t = solver.tables()
  rng = np.random.default_rng(2)
  boards = t["boards"][t["num_blocks"] == 5]
  beaten = solved = 0
  for _ in range(60):
    board = boards[rng.integers(len(boards))]
    columns = [[int(b) for b in col if b] for col in board]
    blocks = [b for col in columns for b in col]
    pairs = rng.choice(blocks, (2, 2), replace=False)
    constraints = [(int(a), int(rng.integers(4)), int(b)) for a, b in pairs]
    minimum = solver.min_moves(board, constraints)
    if minimum < 0:
      continue
    for _ in range(50):
      cols = [list(c) for c in columns]
      for moves in range(minimum + 6):
        if all(ref.holds(cols, c) for c in constraints):
          solved += 1
          beaten += moves < minimum
          break
        src, dst = ref.PAIRS[rng.integers(6)]
        if cols[src] and len(cols[dst]) < 3:
          cols[dst].append(cols[src].pop())
  assert beaten == 0 and solved > 100
