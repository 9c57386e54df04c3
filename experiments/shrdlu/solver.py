"""Exact solver for Mini-SHRDLU: every board, every move, every distance.

A board is ``int[3, 3]`` indexed ``[column, height]`` (height 0 = bottom),
holding block ids 1..6 or 0 for empty, with no block above an empty square.

The boards whose blocks are exactly ``{1..n}`` number ``n! * C(n)``, with
``C(n)`` the ways of splitting ``n`` into 3 column heights of at most 3:

  n       0  1   2   3    4     5     6
  boards  1  3  12  60  288  1440  7200     (total 9004)

Distances are label-blind: relabelling the blocks of both boards keeps the
distance. So every start board is a *canonical* board (a height profile with
blocks 1..n placed column by column, bottom to top) relabelled by a
permutation, and one BFS per height profile (54 profiles, n = 0..6) gives the
distance from any start board to any board: ``dist[profile, board]``, a
``54 x 9004`` uint8 table (255 = unreachable: another block count).

Everything here is numpy, computed once and cached (~1 s).
"""

from __future__ import annotations

import functools
import itertools
from typing import Dict, List, Sequence, Tuple

import numpy as np

SIZE = 3
MAX_BLOCKS = 6
UNREACHABLE = 255
# Action a < 6 moves the top block of column MOVES[a][0] onto column
# MOVES[a][1]; action 6 is "pass".
MOVES = ((0, 1), (0, 2), (1, 0), (1, 2), (2, 0), (2, 1))
PASS = 6
NUM_ACTIONS = 7
# Relations, in the observation's one-hot order: position 0 = "above" (the
# paper's example); below, left of, right of are our choice.
ABOVE, BELOW, LEFT, RIGHT = 0, 1, 2, 3
RELATION_NAMES = ("above", "below", "left of", "right of")


def _profiles(n: int) -> List[Tuple[int, int, int]]:
  """Column heights (h0, h1, h2), each <= 3, summing to ``n``."""
  return [h for h in itertools.product(range(SIZE + 1), repeat=SIZE)
          if sum(h) == n]


def canonical_board(heights: Sequence[int]) -> np.ndarray:
  """Blocks 1..n placed column by column, bottom to top."""
  board = np.zeros((SIZE, SIZE), np.int32)
  label = 1
  for column, height in enumerate(heights):
    for row in range(height):
      board[column, row] = label
      label += 1
  return board


def apply_move(board: np.ndarray, action: int) -> Tuple[np.ndarray, bool]:
  """``(new_board, valid)``; an invalid move (or pass) returns a copy."""
  board = np.array(board, np.int32)
  if action == PASS:
    return board, True
  src, dst = MOVES[action]
  src_h = int(np.count_nonzero(board[src]))
  dst_h = int(np.count_nonzero(board[dst]))
  if src_h == 0 or dst_h == SIZE:
    return board, False
  board[dst, dst_h] = board[src, src_h - 1]
  board[src, src_h - 1] = 0
  return board, True


@functools.lru_cache(maxsize=None)
def tables() -> Dict[str, np.ndarray]:
  """All boards and distances (cached). Keys:

  - ``boards``: ``int32[NB, 3, 3]``, NB = 9004, grouped by block count.
  - ``num_blocks``: ``int32[NB]``.
  - ``positions``: ``int32[NB, 7, 2]``: (column, height) of block id 0..6,
    (-1, -1) when absent (id 0 is always absent).
  - ``neighbours``: ``int32[NB, 6]``: board index after each move (itself if
    the move is invalid).
  - ``profiles``: ``int32[NP, 3]`` column heights, NP = 54.
  - ``profile_boards``: ``int32[NP]`` index of each canonical board.
  - ``profile_of_heights``: ``int32[4, 4, 4]`` profile index of heights.
  - ``dist``: ``uint8[NP, NB]`` minimum moves canonical board -> board.
  - ``max_dist``: ``int32[NP]`` the farthest reachable board's distance.
  - ``by_dist`` / ``by_dist_count``: ``int32[NP, 8, K]`` / ``int32[NP, 8]``:
    the boards at exactly distance d (d = 0..7, clipped), padded with -1.
  - ``near`` / ``near_dist``: ``int32[NP, 492]``: every board within 7 moves
    of each canonical board and its distance (padding: distance 255).
  """
  boards, num_blocks = [], []
  for n in range(MAX_BLOCKS + 1):
    for heights in _profiles(n):
      for labels in itertools.permutations(range(1, n + 1)):
        board = np.zeros((SIZE, SIZE), np.int32)
        it = iter(labels)
        for column, height in enumerate(heights):
          for row in range(height):
            board[column, row] = next(it)
        boards.append(board)
        num_blocks.append(n)
  boards = np.stack(boards)
  index = {b.tobytes(): i for i, b in enumerate(boards)}
  nb = len(boards)
  positions = -np.ones((nb, MAX_BLOCKS + 1, 2), np.int32)
  for i, board in enumerate(boards):
    for column in range(SIZE):
      for row in range(SIZE):
        if board[column, row]:
          positions[i, board[column, row]] = (column, row)
  neighbours = np.zeros((nb, len(MOVES)), np.int32)
  for i, board in enumerate(boards):
    for a in range(len(MOVES)):
      neighbours[i, a] = index[apply_move(board, a)[0].tobytes()]
  profiles = np.array([h for n in range(MAX_BLOCKS + 1) for h in _profiles(n)],
                      np.int32)
  profile_boards = np.array(
      [index[canonical_board(h).tobytes()] for h in profiles], np.int32)
  profile_of_heights = -np.ones((SIZE + 1,) * SIZE, np.int32)
  for p, h in enumerate(profiles):
    profile_of_heights[tuple(h)] = p
  dist = np.full((len(profiles), nb), UNREACHABLE, np.uint8)
  for p, start in enumerate(profile_boards):
    dist[p] = bfs(neighbours, start)
  reach = np.where(dist == UNREACHABLE, -1, dist.astype(np.int32))
  max_dist = reach.max(axis=1).astype(np.int32)
  depths = 8
  counts = np.zeros((len(profiles), depths), np.int32)
  for d in range(depths):
    counts[:, d] = (reach == d).sum(axis=1)
  width = int(counts.max())
  by_dist = -np.ones((len(profiles), depths, width), np.int32)
  for p in range(len(profiles)):
    for d in range(depths):
      found = np.flatnonzero(reach[p] == d)
      by_dist[p, d, :len(found)] = found
  near_width = int(counts.sum(axis=1).max())
  near = np.zeros((len(profiles), near_width), np.int32)
  near_dist = np.full((len(profiles), near_width), UNREACHABLE, np.int32)
  for p in range(len(profiles)):
    found = np.flatnonzero(reach[p] >= 0)
    found = found[reach[p, found] < depths]
    found = found[np.argsort(reach[p, found], kind="stable")]
    near[p, :len(found)] = found
    near_dist[p, :len(found)] = reach[p, found]
  return dict(near=near, near_dist=near_dist, boards=boards,
              num_blocks=np.array(num_blocks, np.int32),
              positions=positions, neighbours=neighbours, profiles=profiles,
              profile_boards=profile_boards,
              profile_of_heights=profile_of_heights, dist=dist,
              max_dist=max_dist, by_dist=by_dist, by_dist_count=counts)


def bfs(neighbours: np.ndarray, start: int) -> np.ndarray:
  """uint8 distances from ``start`` over the move graph (255: unreachable)."""
  dist = np.full(len(neighbours), UNREACHABLE, np.uint8)
  dist[start] = 0
  frontier = np.array([start])
  d = 0
  while frontier.size:
    d += 1
    nxt = np.unique(neighbours[frontier].ravel())
    nxt = nxt[dist[nxt] == UNREACHABLE]
    dist[nxt] = d
    frontier = nxt
  return dist


def board_index(board) -> int:
  """Index of ``board`` (labels need not be 1..n: only its own index)."""
  t = tables()
  match = np.flatnonzero((t["boards"] == np.asarray(board)).all(axis=(1, 2)))
  if not match.size:
    raise ValueError("board is not a valid board (floating block, or block "
                     "ids other than 1..n)")
  return int(match[0])


def satisfied(board, constraint) -> bool:
  """Whether ``(first, relation, second)`` holds on ``board`` (adjacency)."""
  a, rel, b = (int(x) for x in constraint)
  board = np.asarray(board)
  pa, pb = np.argwhere(board == a), np.argwhere(board == b)
  if not len(pa) or not len(pb):
    return False
  (ca, ra), (cb, rb) = pa[0], pb[0]
  if rel == ABOVE:
    return ca == cb and ra == rb + 1
  if rel == BELOW:
    return ca == cb and ra == rb - 1
  if rel == LEFT:
    return ra == rb and ca == cb - 1
  if rel == RIGHT:
    return ra == rb and ca == cb + 1
  raise ValueError(f"relation must be 0..3, got {rel}")


def min_moves(board, constraints, limit: int = 20) -> int:
  """Fewest moves from ``board`` to a board satisfying all ``constraints``.

  Plain BFS from ``board`` (any block ids); -1 if no board within ``limit``
  moves does (e.g. a constraint on a block that is not on the board).
  """
  start = np.array(board, np.int32)
  seen = {start.tobytes()}
  frontier = [start]
  for d in range(limit + 1):
    nxt = []
    for b in frontier:
      if all(satisfied(b, c) for c in constraints):
        return d
      for a in range(len(MOVES)):
        child, valid = apply_move(b, a)
        key = child.tobytes()
        if valid and key not in seen:
          seen.add(key)
          nxt.append(child)
    frontier = nxt
  return -1
