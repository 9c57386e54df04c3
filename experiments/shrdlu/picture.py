"""A picture of one Mini-SHRDLU episode, as Fig. 4a draws it.

:func:`record_episode` plays one episode with a trained agent and keeps the
board and the policy DNC's memory weightings at every step;
:func:`plot_episode` draws the boards, the write weightings while the goals
are shown, and the read weightings after the go cue.
"""

from __future__ import annotations

import dataclasses
from typing import List

import jax
import jax.numpy as jnp
import numpy as np

from dnc_jax import DNCState
from experiments.shrdlu import agent
from experiments.shrdlu import env

RELATIONS = ("above", "below", "left of", "right of")
MOVES = ("0>1", "0>2", "1>0", "1>2", "2>0", "2>1", "pass")


@dataclasses.dataclass
class Episode:
  """One episode; time is the leading axis ``T`` (steps) of every array.

  Attributes:
    boards: ``[T + 1, 3, 3]`` ``[column, height]``, before each step and at
      the end.
    actions: ``[T]`` the policy's actions (ignored while goals are shown).
    rewards: ``[T]``.
    write: ``[T, N]`` the policy DNC's write weighting (summed over heads).
    read: ``[T, R, N]`` its read weightings.
    labels: ``[T]`` what the step showed or did.
    num_present: steps showing goals; the go cue is step ``num_present``.
    min_moves: ``L`` of the chosen goal.
    outcome: ``env.PERFECT``, ``SUCCESS`` or ``INCOMPLETE``.
    title: lesson and chosen goal.
  """

  boards: np.ndarray
  actions: np.ndarray
  rewards: np.ndarray
  write: np.ndarray
  read: np.ndarray
  labels: List[str]
  num_present: int
  min_moves: int
  outcome: int
  title: str


def _letter(i: int) -> str:
  return chr(ord("A") + int(i))


def _presented(state) -> List[str]:
  """Labels of the presentation steps: ``"A: 3 above 1"``."""
  labels = []
  for g in range(int(state.num_goals)):
    for c in range(int(state.goal_sizes[g])):
      first, relation, second = (int(v) for v in state.goals[g, c])
      labels.append(f"{_letter(state.letters[g])}: {first} "
                    f"{RELATIONS[relation]} {second}")
  return labels


def record_episode(task, params, key: jax.Array, lesson: int) -> Episode:
  """Plays one episode of ``lesson`` (0-based) with ``task.model``.

  Raises:
    ValueError: the task has no model, or its networks are not DNCs.
  """
  if task.model is None:
    raise ValueError("make_model first: the task has no model")
  core = task.model.core
  reset_key, run_key = jax.random.split(key)
  state, obs = jax.jit(env.reset)(reset_key, jnp.asarray(task.table[lesson]),
                                  task.tables())
  state = jax.device_get(state)
  net = core.initial_state(params, 1)
  if not isinstance(net[0], DNCState):
    raise ValueError("the picture shows the policy DNC's memory; this run's "
                     "networks are LSTMs")
  num_present = int(state.num_present)
  steps = num_present + int(state.min_moves) + task.env_params.slack
  step_net = jax.jit(core.step)
  step_env = jax.jit(env.step, static_argnums=2)
  labels = _presented(state)
  go = f"go {_letter(state.letters[state.chosen])} "
  boards, actions, rewards, write, read = [], [], [], [], []
  for t, k in enumerate(jax.random.split(run_key, steps)):
    boards.append(np.asarray(state.board))
    out, net = step_net(params, obs[None], net)
    logits, _ = agent.split_outputs(out)
    action = jax.random.categorical(k, logits[0]).astype(jnp.int32)
    state, obs, reward, _ = step_env(state, action, task.env_params)
    access = net[0].access_state
    write.append(np.asarray(access.write_weights[0]).sum(axis=0))
    read.append(np.asarray(access.read_weights[0]))
    actions.append(int(action))
    rewards.append(float(reward))
    if t >= num_present:
      labels.append((go if t == num_present else "") + MOVES[int(action)])
  boards.append(np.asarray(state.board))
  chosen = int(state.chosen)
  goal = ", ".join(
      f"{int(a)} {RELATIONS[int(r)]} {int(b)}"
      for a, r, b in np.asarray(state.goals[chosen])[
          :int(state.goal_sizes[chosen])])
  return Episode(
      boards=np.stack(boards), actions=np.asarray(actions),
      rewards=np.asarray(rewards, np.float32), write=np.stack(write),
      read=np.stack(read), labels=labels, num_present=num_present,
      min_moves=int(state.min_moves), outcome=int(env.outcome(state)),
      title=(f"lesson {lesson + 1}, goal {_letter(state.letters[chosen])}: "
             f"{goal} (L = {int(state.min_moves)})"))


def _board_image(boards: np.ndarray) -> np.ndarray:
  """``[3, 4 T]``: each board's rows (top row first), a gap column after."""
  tiles = []
  for board in boards:
    tile = np.full((3, 4), np.nan)
    tile[:, :3] = board.T[::-1]  # Rows: top height first; columns 0..2.
    tiles.append(tile)
  return np.concatenate(tiles, axis=1)


def plot_episode(episode: Episode, path=None):
  """Boards (top), write weightings during the goals, read weightings after
  the go cue (bottom). Saves to ``path`` if given; returns the figure."""
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel

  steps, slots = episode.write.shape
  reads = episode.read.shape[1]
  present = np.arange(steps) < episode.num_present
  write = np.where(present[:, None], episode.write, np.nan).T
  read = np.where(~present[:, None, None], episode.read, np.nan)
  read = read.transpose(1, 2, 0).reshape(reads * slots, steps)
  fig, axes = plt.subplots(
      3, 1, figsize=(max(6.0, 0.45 * steps), 7.5),
      gridspec_kw={"height_ratios": [1.2, 2, 2 * reads]})
  image = _board_image(episode.boards[:steps])
  axes[0].imshow(np.where(image > 0, image, np.nan), cmap="tab10",
                 vmin=0, vmax=9, aspect="auto",
                 extent=(-0.5, steps - 0.5, 0, 3), interpolation="nearest")
  for t in range(steps):
    for row in range(3):
      for col in range(3):
        block = int(episode.boards[t][col, 2 - row])
        if block:
          axes[0].text(t - 0.375 + col * 0.25, 2.5 - row, str(block),
                       ha="center", va="center", fontsize=6)
  axes[0].set_yticks([])
  axes[0].set_title(episode.title + "  [" + ("perfect", "success",
                                            "incomplete")[episode.outcome]
                    + "]", fontsize=9)
  for ax, values, name in ((axes[1], write, "write weighting (goals shown)"),
                           (axes[2], read, "read weightings (after go)")):
    ax.imshow(values, cmap="viridis", vmin=0, vmax=1, aspect="auto",
              interpolation="nearest", extent=(-0.5, steps - 0.5,
                                               values.shape[0] - 0.5, -0.5))
    ax.set_ylabel(name, fontsize=8)
  axes[2].set_yticks([r * slots + slots / 2 - 0.5 for r in range(reads)])
  axes[2].set_yticklabels([f"head {r + 1}" for r in range(reads)],
                          fontsize=7)
  axes[1].set_yticks([])
  for ax in axes:
    ax.axvline(episode.num_present - 0.5, color="red", lw=1)
    ax.set_xlim(-0.5, steps - 0.5)
    ax.set_xticks(range(steps))
    ax.set_xticklabels([])
  axes[2].set_xticklabels(episode.labels, rotation=70, fontsize=6,
                          ha="right")
  fig.tight_layout()
  if path is not None:
    fig.savefig(path, dpi=110)
    plt.close(fig)
  return fig
