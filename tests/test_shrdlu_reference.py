"""An independent, plain-Python Mini-SHRDLU step, and its own sanity checks.

Written from PROTOCOL §2 and the choices in experiments/shrdlu/README.md,
not from env.py: columns are Python lists (stacks), relations are tested on
(column, height) coordinates found by scanning, the observation is built
field by field. ``tests/test_shrdlu_env.py`` checks env.step against it and
``experiments.shrdlu.bench`` times it.
"""

import copy

SLACK, INVALID_COST, UNDO_PENALTY = 6, 0.1, 1.0
PAIRS = [(0, 1), (0, 2), (1, 0), (1, 2), (2, 0), (2, 1)]


def from_state(state, i=None):
  """A reference episode (dict of Python values) from an env.State."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  get = (lambda x: np.asarray(x)) if i is None else (
      lambda x: np.asarray(x)[i])
  board = get(state.board)
  count = int(get(state.num_goals))
  sizes = get(state.goal_sizes).tolist()[:count]
  goals = [[tuple(int(v) for v in c) for c in g[:n]]
           for g, n in zip(get(state.goals).tolist(), sizes)]
  return dict(
      columns=[[int(b) for b in col if b] for col in board.tolist()],
      goals=goals, letters=get(state.letters).tolist()[:count],
      chosen=int(get(state.chosen)), present=int(get(state.num_present)),
      minimum=int(get(state.min_moves)), t=int(get(state.t)),
      moves=int(get(state.moves)), solved_at=int(get(state.solved_at)),
      was_solved=bool(get(state.was_solved)), done=bool(get(state.done)))


def where(columns, block):
  for c, col in enumerate(columns):
    if block in col:
      return c, col.index(block)
  return None


def holds(columns, constraint):
  first, relation, second = constraint
  p, q = where(columns, first), where(columns, second)
  if p is None or q is None:
    return False
  dc, dh = p[0] - q[0], p[1] - q[1]
  return {0: dc == 0 and dh == 1, 1: dc == 0 and dh == -1,
          2: dh == 0 and dc == -1, 3: dh == 0 and dc == 1}[relation]


def observe(ep):
  obs = [0.0] * 97
  t, present = ep["t"], ep["present"]
  if t < present:
    k = t
    for g, goal in enumerate(ep["goals"]):
      if k < len(goal):
        first, relation, second = goal[k]
        obs[ep["letters"][g]] = 1.0
        obs[26 + first - 1] = 1.0
        obs[32 + relation] = 1.0
        obs[36 + second - 1] = 1.0
        break
      k -= len(goal)
  elif not ep["done"]:
    if t == present:
      obs[ep["letters"][ep["chosen"]]] = 1.0
    obs[42] = 1.0
  for c, col in enumerate(ep["columns"]):
    for h, block in enumerate(col):
      obs[43 + 6 * (3 * h + c) + block - 1] = 1.0
  return obs


def step(ep, action):
  """(new episode, obs, reward, done); ``ep`` is not changed."""
  ep = copy.deepcopy(ep)
  reward = 0.0
  if not ep["done"] and ep["t"] >= ep["present"]:
    valid = True
    if action < 6:
      src, dst = PAIRS[action]
      if ep["columns"][src] and len(ep["columns"][dst]) < 3:
        ep["columns"][dst].append(ep["columns"][src].pop())
        ep["moves"] += 1
      else:
        valid = False
    goal = ep["goals"][ep["chosen"]]
    count = sum(holds(ep["columns"], c) for c in goal)
    solved = count == len(goal)
    reward = float(count)
    if not valid:
      reward -= INVALID_COST
    if ep["was_solved"] and not solved:
      reward -= UNDO_PENALTY
    if solved and ep["solved_at"] < 0:
      ep["solved_at"] = ep["moves"]
    ep["was_solved"] = solved
  if not ep["done"]:
    ep["t"] += 1
    if ep["t"] >= ep["present"] + ep["minimum"] + SLACK:
      ep["done"] = True
  return ep, observe(ep), reward, ep["done"]


# Sanity checks of the reference itself, on hand-made episodes.


def _episode(columns, goal):
  return dict(columns=columns, goals=[goal], letters=[7], chosen=0,
              present=len(goal), minimum=1, t=0, moves=0, solved_at=-1,
              was_solved=False, done=False)


def test_reference_relations():
  columns = [[1, 2], [3], []]
  assert holds(columns, (2, 0, 1)) and holds(columns, (1, 1, 2))
  assert holds(columns, (1, 2, 3)) and holds(columns, (3, 3, 1))
  assert not holds(columns, (2, 2, 3)) and not holds(columns, (1, 0, 2))


def test_reference_episode():
  ep = _episode([[1, 2], [3], []], [(3, 0, 2)])
  ep, obs, reward, done = step(ep, 6)  # presentation: ignored.
  assert (reward, done, ep["columns"]) == (0.0, False, [[1, 2], [3], []])
  assert obs[7] == 1.0 and obs[42] == 1.0  # go step: letter and cue.
  ep, obs, reward, done = step(ep, 2)  # 3 onto 2: satisfied.
  assert ep["columns"] == [[1, 2, 3], [], []] and reward == 1.0
  ep, obs, reward, done = step(ep, 3)  # from the empty column: invalid.
  assert reward == 1.0 - INVALID_COST
  ep, obs, reward, done = step(ep, 0)  # undo.
  assert reward == -UNDO_PENALTY and ep["solved_at"] == 1
