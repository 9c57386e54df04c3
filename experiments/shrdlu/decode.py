r"""Decoding the first actions from the goal in memory (Fig. 4d).

PROTOCOL §2.7: on each of 800 Mini-SHRDLU episodes played by a trained
policy DNC, the memory locations read at the time of the query (the go cue)
are taken as those holding the chosen goal; their contents when last
written, averaged, form one vector per episode; a logistic regression
decodes from it each of the first five actions after the query, against
predicting each from its frequency. The paper: 89 % of first actions
decoded, 17 % from frequencies.

  python -m experiments.shrdlu.decode --checkpoint RUN [--episodes 800]
      [--splits 100] [--lesson N] [--seed 0]

prints, per offset ``k`` (action ``k`` is taken at ``t_query + k - 1``),
the test accuracy over random 80 %/20 % splits of the episodes, mean and
5th–95th percentile, of the decoder, of the same regression given the
board the first action is taken on instead (a control, not in the paper:
what the board alone tells of the actions) and of the baseline. A last
line puts Fig. 4a in numbers (:func:`read_focus`): the share of the query's
reads that falls on what the named goal wrote, beside the next goal's.

Readings where the paper is silent (see :func:`goal_features`,
:func:`fit_logistic` and :func:`decode`):

- the query is the go step, ``t_q = num_present``, on which the first
  action is taken; its read weightings are those of that step's reads (the
  state after the step), whose words feed the first action's logits;
- a location is relevant when **any** read head weights it above 0.01;
- it was last written at the last step ``t < t_q`` whose write weighting
  (summed over write heads) on it exceeds 0.01; its content is the memory
  row **after** that step's write. A relevant location never written
  before the query is left out; an episode with no location left gets a
  zero vector (counted and printed);
- the regression's objective is sklearn's at ``C = 1``: summed
  cross-entropy plus ``½‖W‖²``, intercepts not penalised, features as they
  are (not standardised);
- the baseline predicts the training split's most frequent action at that
  offset;
- an episode whose action phase ends before offset ``k`` has no target
  there and is left out of that offset's data (both train and test).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import List, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from dnc_jax import DNCState
from experiments.shrdlu import agent
from experiments.shrdlu import env

THRESHOLD = 0.01
OFFSETS = 5
L2 = 1.0
# The observation's board: one 6-dim place code per square, last.
BOARD = slice(env.OBS_SIZE - env.SIZE * env.SIZE * env.MAX_BLOCKS,
              env.OBS_SIZE)


# --- Playing and recording. -----------------------------------------------

@dataclasses.dataclass
class Recording:
  """``B`` episodes of ``T`` steps, the policy DNC's memory after each step.

  Attributes:
    memory: ``float32[B, T, N, W]`` the memory matrix after step ``t``.
    write: ``float32[B, T, N]`` step ``t``'s write weighting, summed over
      write heads.
    read: ``float32[B, T, R, N]`` step ``t``'s read weightings.
    actions: ``int32[B, T]`` the sampled actions.
    acting: ``bool[B, T]`` action-phase steps before the episode's end.
    boards: ``float32[B, T, 54]`` the board of the observation step ``t``
      saw (at the query, the board the first action is taken on).
    num_present: ``int32[B]`` presentation steps; the query is step
      ``num_present``.
    goal_sizes: ``int32[B, G]`` constraints of each goal (0: not shown);
      goal ``g``'s are shown one a step, after goal ``g - 1``'s.
    chosen: ``int32[B]`` the goal the go cue names.
  """

  memory: np.ndarray
  write: np.ndarray
  read: np.ndarray
  actions: np.ndarray
  acting: np.ndarray
  boards: np.ndarray
  num_present: np.ndarray
  goal_sizes: np.ndarray
  chosen: np.ndarray


def check_dnc(task, params) -> None:
  """Raises ``ValueError`` unless the task's policy network is a DNC."""
  if task.model is None:
    raise ValueError("make_model first: the task has no model")
  state = jax.eval_shape(lambda: task.model.core.initial_state(params, 1))
  if not isinstance(state[0], DNCState):
    raise ValueError("decoding reads the policy DNC's memory; this run's "
                     "networks are LSTMs (no memory to decode from)")


def _record(core, params, key, rows, tables, steps: int,
            env_params: env.EnvParams):
  """Time-major arrays of :class:`Recording` (``[T, B, ...]``): the
  training rollout (:func:`agent.rollout`, the same episodes for the same
  key) with the networks' states kept."""
  final, traj = agent.rollout(core, params, key, rows, tables, steps,
                              env_params, keep_states=True)
  access = traj["net"][0].access_state
  boards = jax.vmap(jax.vmap(env.observe))(traj["env"])[..., BOARD]
  return dict(memory=access.memory, write=access.write_weights.sum(axis=2),
              read=access.read_weights, actions=traj["actions"],
              acting=traj["mask"], boards=boards), (
                  final.num_present, final.goal_sizes, final.chosen)


def record(task, params, key: jax.Array, lesson: int,
           episodes: int) -> Recording:
  """Plays ``episodes`` episodes of ``lesson`` (0-based) for
  ``task.steps(lesson)`` steps, actions sampled from the policy as in
  training.

  Raises:
    ValueError: no model, the networks are not DNCs, or a bad lesson.
  """
  check_dnc(task, params)
  if not 0 <= lesson < len(task.lessons):
    raise ValueError(f"lesson must be in 0..{len(task.lessons) - 1} "
                     f"(0-based), got {lesson}")
  steps = task.steps(lesson)
  run = jax.jit(lambda p, k, r, tb: _record(task.model.core, p, k, r, tb,
                                            steps, task.env_params))
  rows = np.repeat(task.table[lesson:lesson + 1], episodes, axis=0)
  out, (num_present, sizes, chosen) = jax.device_get(
      run(params, key, jnp.asarray(rows), task.tables()))
  batch_major = {k: np.swapaxes(np.asarray(v), 0, 1) for k, v in out.items()}
  return Recording(num_present=np.asarray(num_present),
                   goal_sizes=np.asarray(sizes), chosen=np.asarray(chosen),
                   **batch_major)


# --- Features and targets. ------------------------------------------------

def goal_features(memory: np.ndarray, write: np.ndarray, read: np.ndarray,
                  query: np.ndarray, threshold: float = THRESHOLD
                  ) -> Tuple[np.ndarray, np.ndarray]:
  """``(features [B, W], locations int[B])``.

  Args:
    memory: ``[B, T, N, W]`` memory after each step.
    write: ``[B, T, N]`` write weightings.
    read: ``[B, T, R, N]`` read weightings.
    query: ``int[B]`` the query step of each episode.

  A location is relevant when some head's read weighting on it at the query
  step exceeds ``threshold``; its content is ``memory`` at the last step
  before the query whose write weighting on it exceeds ``threshold``. The
  features average these contents uniformly over the relevant locations
  that were written before the query (``locations`` of them); zero where
  there is none.
  """
  batch, steps = write.shape[:2]
  rows = np.arange(batch)
  relevant = (read[rows, query] > threshold).any(axis=1)  # [B, N]
  before = np.arange(steps)[None, :] < query[:, None]  # [B, T]
  written = (write > threshold) & before[:, :, None]
  t_index = np.arange(steps)[None, :, None]
  last = np.where(written, t_index, -1).max(axis=1)  # [B, N]
  usable = relevant & (last >= 0)
  content = np.take_along_axis(
      memory, np.maximum(last, 0)[:, None, :, None], axis=1)[:, 0]  # [B,N,W]
  locations = usable.sum(axis=1)
  total = (content * usable[:, :, None]).sum(axis=1)
  features = total / np.maximum(locations, 1)[:, None]
  return features.astype(np.float64), locations


def shown_goal(goal_sizes: np.ndarray, steps: int) -> np.ndarray:
  """``int[B, T]``: the goal whose constraint step ``t`` shows, -1 from the
  go step on (``goal_sizes [B, G]``; goals are shown in order, one
  constraint a step)."""
  ends = np.cumsum(goal_sizes, axis=1)  # [B, G]
  t = np.arange(steps)[None, :, None]
  goal = (ends[:, None, :] <= t).sum(axis=2)  # [B, T]
  return np.where(t[..., 0] < ends[:, -1:], goal, -1)


def next_shown(goal_sizes: np.ndarray, chosen: np.ndarray) -> np.ndarray:
  """``int[B]``: the first goal after ``chosen``, cyclically, that was
  shown (has constraints); ``chosen`` itself when it is the only one."""
  goals = goal_sizes.shape[1]
  offsets = np.arange(1, goals + 1)[None, :]  # Ends with chosen itself.
  candidates = (chosen[:, None] + offsets) % goals
  shown = np.take_along_axis(goal_sizes, candidates, axis=1) > 0
  return candidates[np.arange(len(chosen)), np.argmax(shown, axis=1)]


def read_focus(write: np.ndarray, read: np.ndarray, goal_sizes: np.ndarray,
               chosen: np.ndarray, query: np.ndarray
               ) -> Tuple[np.ndarray, np.ndarray]:
  """``(named [B], next [B])``: the shares of the query step's reads that
  fall on what the named goal and the next goal shown (:func:`next_shown`)
  wrote; NaN where nothing was written while goals were shown.

  Args:
    write: ``[B, T, N]`` write weightings.
    read: ``[B, T, R, N]`` read weightings.
    goal_sizes: ``int[B, G]``; chosen: ``int[B]``; query: ``int[B]``.

  Location ``n`` belongs to goal ``g`` in proportion to the write weight
  the steps showing ``g`` put on it, ``o[n, g] = A[n, g] / Σ_h A[n, h]``
  with ``A[n, g] = Σ_{t shows g} write[t, n]``. The read weighting at the
  query, averaged over heads (``r̄``), gives goal ``g`` the mass ``m_g =
  Σ_n r̄_n o[n, g]``; a share is ``m_g / Σ_h m_h``. Fig. 4a's reads fall on
  the named goal's locations: a share near 1. The go cue is drawn
  independently of all that came before it, so reads that ignore it give
  the named and the next goal the same share on average.
  """
  batch, steps, _ = write.shape
  goals = goal_sizes.shape[1]
  shown = shown_goal(goal_sizes, steps)  # [B, T]
  shown = np.where(np.arange(steps)[None, :] < query[:, None], shown, -1)
  by_goal = (shown[:, :, None] == np.arange(goals)[None, None, :])  # [B,T,G]
  mass = np.einsum("btg,btn->bng", by_goal.astype(np.float64), write)
  total = mass.sum(axis=2, keepdims=True)
  owner = np.where(total > 0, mass / np.where(total > 0, total, 1.0), 0.0)
  reads = read[np.arange(batch), query].mean(axis=1)  # [B, N]
  per_goal = np.einsum("bn,bng->bg", reads, owner)
  whole = per_goal.sum(axis=1)
  rows = np.arange(batch)
  with np.errstate(invalid="ignore", divide="ignore"):
    named = np.where(whole > 0, per_goal[rows, chosen] / whole, np.nan)
    other = np.where(whole > 0, per_goal[rows, next_shown(goal_sizes, chosen)]
                     / whole, np.nan)
  return named, other


def focus_line(named: np.ndarray, other: np.ndarray) -> str:
  """:func:`read_focus`'s shares as one line: their means over the episodes
  that have them, and the difference with its standard error."""
  has = ~np.isnan(named)
  if not has.any():
    return "reads at the query: no episode wrote while its goals were shown"
  gap = named[has] - other[has]
  error = gap.std(ddof=1) / np.sqrt(len(gap)) if len(gap) > 1 else np.nan
  return (f"reads at the query: the named goal's writes get "
          f"{named[has].mean():.3f} of them, the next goal's "
          f"{other[has].mean():.3f}, difference {gap.mean():+.3f} ± "
          f"{error:.3f} (s.e.; 0 on average while the reads ignore the go "
          f"cue); {int(has.sum())} episodes")


def board_features(boards: np.ndarray, query: np.ndarray) -> np.ndarray:
  """``float64[B, 54]``: the board each episode's first action is taken
  on (``boards [B, T, 54]`` at step ``query [B]``). A control for
  :func:`goal_features`: how much of the first actions the board alone
  tells, without the goal."""
  return boards[np.arange(len(query)), query].astype(np.float64)


def first_actions(actions: np.ndarray, acting: np.ndarray, query: np.ndarray,
                  count: int = OFFSETS) -> np.ndarray:
  """``int[B, count]``: action ``k + 1`` is ``actions[:, query + k]``; -1
  where that step is past the end of the episode (or of the recording)."""
  batch, steps = actions.shape
  t = query[:, None] + np.arange(count)[None, :]
  inside = t < steps
  t = np.minimum(t, steps - 1)
  rows = np.arange(batch)[:, None]
  return np.where(inside & acting[rows, t], actions[rows, t], -1)


# --- Multinomial logistic regression. -------------------------------------

@dataclasses.dataclass
class Logistic:
  """A fitted multinomial logistic regression.

  Attributes:
    weights: ``[D, K]`` over the ``K`` classes seen in training.
    bias: ``[K]``.
    classes: ``int[K]`` the labels of those classes, ascending.
  """

  weights: np.ndarray
  bias: np.ndarray
  classes: np.ndarray

  def predict(self, x: np.ndarray) -> np.ndarray:
    """``int[n]`` labels of ``x [n, D]``."""
    return self.classes[np.argmax(x @ self.weights + self.bias, axis=1)]


def _log_softmax(z: np.ndarray) -> np.ndarray:
  z = z - z.max(axis=1, keepdims=True)
  return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def objective(weights: np.ndarray, bias: np.ndarray, x: np.ndarray,
              y: np.ndarray, l2: float = L2) -> float:
  """``J(W, b) = Σ_i -log softmax(x_i W + b)[y_i] + (l2 / 2) ‖W‖²``.

  ``x [n, D]``, ``y int[n]`` indices into the ``K`` columns of ``weights
  [D, K]``; ``bias [K]`` is not penalised. With ``l2 = 1`` this is
  scikit-learn's ``LogisticRegression(C=1)`` (multinomial).
  """
  log_p = _log_softmax(x @ weights + bias)
  return float(-log_p[np.arange(len(y)), y].sum()
               + 0.5 * l2 * np.sum(weights ** 2))


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = L2,
                 tol: float = 1e-9, max_iter: int = 100) -> Logistic:
  """Minimises :func:`objective` over the classes present in ``y``.

  ``x [n, D]``, ``y int[n]`` (any labels). Newton's method with
  backtracking on the convex objective; ``b`` of the first class is held
  at 0 (``J`` is unchanged by adding a constant to every ``b_k``), which
  makes the objective strictly convex for ``l2 > 0``. Stops when the
  largest gradient entry is below ``tol · max(n, 1)``.

  Raises:
    ValueError: ``l2 <= 0`` or no examples.
  """
  if not l2 > 0:
    raise ValueError(f"l2 must be > 0, got {l2}")
  if len(y) == 0:
    raise ValueError("no examples to fit")
  classes, index = np.unique(y, return_inverse=True)
  n, dim = x.shape
  k = len(classes)
  if k == 1:
    return Logistic(np.zeros((dim, 1)), np.zeros(1), classes)
  xa = np.concatenate([x, np.ones((n, 1))], axis=1)  # Intercept: last row.
  onehot = np.eye(k)[index]
  penalty = np.concatenate([np.full(dim, l2), [0.0]])[:, None]  # [D+1, 1]
  free = np.ones((dim + 1, k), bool)
  free[dim, 0] = False
  theta = np.zeros((dim + 1, k))

  def value(theta):
    return objective(theta[:dim], theta[dim], x, index, l2)

  current = value(theta)
  for _ in range(max_iter):
    p = np.exp(_log_softmax(xa @ theta))
    grad = xa.T @ (p - onehot) + penalty * theta
    if np.max(np.abs(grad[free])) < tol * max(n, 1):
      break
    # H[(d, j), (e, l)] = Σ_i x_id x_ie (p_ij δ_jl - p_ij p_il) + pen_d δ.
    outer = (xa[:, :, None] * xa[:, None, :]).reshape(n, -1)
    curv = (p[:, :, None] * np.eye(k)[None] - p[:, :, None] * p[:, None, :])
    hess = (outer.T @ curv.reshape(n, -1)).reshape(dim + 1, dim + 1, k, k)
    hess = hess.transpose(0, 2, 1, 3).reshape((dim + 1) * k, -1)
    hess += np.diag(np.repeat(penalty[:, 0], k))
    keep = free.reshape(-1)
    direction = np.zeros((dim + 1) * k)
    direction[keep] = np.linalg.solve(hess[np.ix_(keep, keep)],
                                      -grad.reshape(-1)[keep])
    direction = direction.reshape(dim + 1, k)
    slope = np.sum(grad * direction)
    step = 1.0
    while True:
      trial = theta + step * direction
      trial_value = value(trial)
      if trial_value <= current + 1e-4 * step * slope or step < 1e-10:
        break
      step *= 0.5
    if trial_value > current:  # No descent left at float precision.
      break
    theta, current = trial, trial_value
  return Logistic(theta[:dim], theta[dim], classes)


# --- Splits, baseline and accuracies. -------------------------------------

def random_splits(n: int, count: int, seed: int,
                  train_fraction: float = 0.8
                  ) -> List[Tuple[np.ndarray, np.ndarray]]:
  """``count`` random ``(train, test)`` index arrays over ``range(n)``,
  disjoint and covering it; ``round(train_fraction · n)`` train.

  Raises:
    ValueError: a split would leave train or test empty.
  """
  train = int(round(train_fraction * n))
  if not 0 < train < n:
    raise ValueError(f"{n} episodes cannot be split {train_fraction:.0%} / "
                     f"{1 - train_fraction:.0%} with both parts non-empty")
  rng = np.random.default_rng(seed)
  out = []
  for _ in range(count):
    order = rng.permutation(n)
    out.append((np.sort(order[:train]), np.sort(order[train:])))
  return out


def majority(y: np.ndarray) -> int:
  """The most frequent label of ``y`` (non-negative ints); ties: the
  smallest."""
  return int(np.argmax(np.bincount(y)))


@dataclasses.dataclass
class OffsetResult:
  """Test accuracies at one offset, one entry per split.

  Attributes:
    offset: ``k``: action ``k`` after the query, 1-based.
    decoder: ``[S]`` the logistic regression's accuracy.
    baseline: ``[S]`` the training split's most frequent action's.
    episodes: episodes with a target at this offset.
  """

  offset: int
  decoder: np.ndarray
  baseline: np.ndarray
  episodes: int


def decode(features: np.ndarray, targets: np.ndarray,
           splits: Sequence[Tuple[np.ndarray, np.ndarray]],
           l2: float = L2) -> List[OffsetResult]:
  """Per offset (column of ``targets [B, K]``, -1: none) and per split of
  the ``B`` episodes (``features [B, W]``), test accuracy of
  :func:`fit_logistic` on the training part and of :func:`majority`.
  Episodes with no target at an offset leave that offset's train and test
  parts; a split whose test part is then empty scores NaN."""
  results = []
  for column in range(targets.shape[1]):
    y = targets[:, column]
    has = y >= 0
    decoder, baseline = [], []
    for train, test in splits:
      train, test = train[has[train]], test[has[test]]
      if len(test) == 0 or len(train) == 0:
        decoder.append(np.nan)
        baseline.append(np.nan)
        continue
      model = fit_logistic(features[train], y[train], l2)
      decoder.append(np.mean(model.predict(features[test]) == y[test]))
      baseline.append(np.mean(y[test] == majority(y[train])))
    results.append(OffsetResult(column + 1, np.asarray(decoder),
                                np.asarray(baseline), int(has.sum())))
  return results


def summarise(accuracies: np.ndarray) -> Tuple[float, float, float]:
  """``(mean, 5th, 95th percentile)`` over splits (linear interpolation,
  NaNs left out)."""
  a = accuracies[~np.isnan(accuracies)]
  if len(a) == 0:
    return (np.nan, np.nan, np.nan)
  low, high = np.percentile(a, [5, 95])
  return float(a.mean()), float(low), float(high)


def table(results: Sequence[OffsetResult],
          board: Optional[Sequence[OffsetResult]] = None) -> List[str]:
  """Markdown lines: offset, decoder (and, given ``board``, the same
  regression on :func:`board_features`) and baseline mean (5–95 %),
  episodes."""
  head = "| action after query | decoder mean (5–95 %) | "
  if board is not None:
    head += "board at the cue mean (5–95 %) | "
  lines = [head + "frequency baseline mean (5–95 %) | episodes |",
           "|---|---|---|---|" + ("---|" if board is not None else "")]

  def cell(acc):
    mean, low, high = summarise(acc)
    return f"{mean:.3f} ({low:.3f}–{high:.3f})"

  for i, r in enumerate(results):
    cells = [cell(r.decoder)]
    if board is not None:
      cells.append(cell(board[i].decoder))
    cells.append(cell(r.baseline))
    lines.append(f"| {r.offset} | {' | '.join(cells)} | {r.episodes} |")
  return lines


def run(task, params, lesson: int, episodes: int, splits: int, seed: int
        ) -> Tuple[List[OffsetResult], List[OffsetResult], np.ndarray,
                   Tuple[np.ndarray, np.ndarray]]:
  """Records ``episodes`` episodes, decodes over ``splits`` splits from the
  memory and, on the same splits, from the board at the cue; ``(memory
  results, board results, locations int[episodes], read_focus(...))``."""
  rec = record(task, params, jax.random.PRNGKey(seed), lesson, episodes)
  features, locations = goal_features(rec.memory, rec.write, rec.read,
                                      rec.num_present)
  targets = first_actions(rec.actions, rec.acting, rec.num_present)
  parts = random_splits(episodes, splits, seed)
  board = board_features(rec.boards, rec.num_present)
  focus = read_focus(rec.write, rec.read, rec.goal_sizes, rec.chosen,
                     rec.num_present)
  return (decode(features, targets, parts), decode(board, targets, parts),
          locations, focus)


def main(argv: Optional[List[str]] = None) -> int:
  parser = argparse.ArgumentParser(
      prog="python -m experiments.shrdlu.decode",
      description=__doc__.split("\n\n")[0])
  parser.add_argument("--checkpoint", required=True,
                      help="a run folder of dnc-shrdlu-train (a DNC run)")
  parser.add_argument("--episodes", type=int, default=800)
  parser.add_argument("--splits", type=int, default=100,
                      help="random 80 %%/20 %% train/test splits")
  parser.add_argument("--lesson", type=int, default=None,
                      help="lesson number of Extended Data Table 6, 1..26 "
                      "(default: the run's current lesson)")
  parser.add_argument("--seed", type=int, default=0,
                      help="seeds the episodes and the splits")
  args = parser.parse_args(argv)
  from experiments.checkpoints import CheckpointError
  from experiments.shrdlu.eval import load_run
  try:
    if args.episodes < 2:
      raise ValueError(f"--episodes must be >= 2, got {args.episodes}")
    if args.splits < 1:
      raise ValueError(f"--splits must be >= 1, got {args.splits}")
    task, params, saved = load_run(args.checkpoint)
    if args.lesson is not None and not 1 <= args.lesson <= len(task.lessons):
      raise ValueError(f"--lesson must be 1..{len(task.lessons)}, got "
                       f"{args.lesson}")
    lesson = task.lesson if args.lesson is None else args.lesson - 1
    results, board, locations, (named, other) = run(
        task, params, lesson, args.episodes, args.splits, args.seed)
  except (ValueError, CheckpointError) as error:
    parser.exit(2, f"decode: error: {error}\n")
  print(f"step {saved['step']}, lesson {lesson + 1},"
        f" {args.episodes} episodes, {args.splits} splits 80/20, seed "
        f"{args.seed}; relevant locations written before the query: mean "
        f"{locations.mean():.2f}, none in {int((locations == 0).sum())} "
        f"episodes (zero vector)")
  print("\n".join(table(results, board)))
  print(focus_line(named, other))
  return 0


if __name__ == "__main__":
  sys.exit(main())
