r"""Scores a Mini-SHRDLU run per lesson (Fig. 5b) and draws an episode
(Fig. 4a).

  dnc-shrdlu-eval --checkpoint RUN [--baseline RUN2] [--episodes 160]
      [--lessons N] [--picture episode.png [--picture-lesson K]]

For each lesson up to the run's current one (or ``--lessons N``): the
fraction of episodes solved perfectly (all constraints satisfied at the end,
first reached after exactly the minimum number of moves), solved with extra
moves, and incomplete, and the mean fraction of constraints satisfied.
Actions are sampled from the policy, as in training. ``--baseline RUN2``
(e.g. an LSTM run, Fig. 5b's comparison) is scored on the same episodes and
printed beside it, each run under its model kind. ``--picture`` draws one
episode of lesson ``K`` (default: the current one): the board at every step,
the policy DNC's write weightings while the goals are shown and its read
weightings after the go cue.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
from typing import Any, Dict, List, Optional, Tuple

import jax
import numpy as np

from experiments import cli
from experiments import loop
from experiments.checkpoints import CheckpointError
from experiments.tasks.shrdlu import ShrdluTask


def load_run(run_dir, step: Optional[int] = None
             ) -> Tuple[ShrdluTask, Any, Dict[str, Any]]:
  """``(task, params, record)`` of a run folder's latest checkpoint; the
  task's model is built and its curriculum restored."""
  run_dir = pathlib.Path(run_dir)
  saved = cli.saved_settings(run_dir)
  if saved is None:
    raise CheckpointError(f"no Mini-SHRDLU run in {run_dir}")
  if saved["task_name"] != "shrdlu":
    raise ValueError(f"{run_dir} trains {saved['task_name']!r}, not shrdlu")
  task, model, optimizer_config, _, _ = cli.shrdlu_parts(saved["settings"])
  inputs = task.sample(np.random.default_rng(0), 1).inputs
  params, record, _ = loop.load_params(run_dir, model.init, optimizer_config,
                                       inputs, step=step)
  task.restore_curriculum(record.get("curriculum", {}))
  return task, params, record


def evaluate(task: ShrdluTask, params, lessons: int, episodes: int,
             seed: int) -> List[Tuple[int, float, float, float, float]]:
  """``[(lesson number, perfect, success, incomplete, fraction)]``."""
  rows = []
  key = jax.random.PRNGKey(seed)
  for lesson in range(lessons):
    key, sub = jax.random.split(key)
    r = task.play(params, sub, lesson, episodes)
    rows.append((lesson + 1, r["perfect"], r["success"], r["incomplete"],
                 r["fraction"]))
  return rows


def model_kind(run_dir) -> str:
  """``"dnc"`` or ``"lstm"``: the model kind of a run folder's settings."""
  saved = cli.saved_settings(pathlib.Path(run_dir)) or {}
  return saved.get("settings", {}).get("model", {}).get("kind", "dnc")


def _table(columns: List[Tuple[str, List[Tuple]]]) -> List[str]:
  """Lines of the per-lesson table, one group of four columns per run."""
  names = ["perfect", "success", "incomplete", "satisfied"]
  head = f"{'lesson':>6}" + "".join(
      "".join(f" {(label + ' ' if len(columns) > 1 else '') + name:>15}"
              for name in names) for label, _ in columns)
  lines = [head]
  for i, row in enumerate(columns[0][1]):
    lines.append(f"{row[0]:>6}" + "".join(
        "".join(f" {value:>15.3f}" for value in rows[i][1:])
        for _, rows in columns))
  return lines


def main(argv: Optional[List[str]] = None) -> int:
  parser = argparse.ArgumentParser(prog="dnc-shrdlu-eval",
                                   description=__doc__.split("\n\n")[0])
  parser.add_argument("--checkpoint", required=True,
                      help="a run folder of dnc-shrdlu-train")
  parser.add_argument("--baseline", default=None,
                      help="another run folder (e.g. --preset lstm) scored "
                      "on the same episodes, printed beside")
  parser.add_argument("--episodes", type=int, default=160)
  parser.add_argument("--lessons", type=int, default=None,
                      help="score lessons 1..N (default: up to the current; "
                      "0: none)")
  parser.add_argument("--seed", type=int, default=1)
  parser.add_argument("--picture", default=None,
                      help="draw one episode into this PNG (Fig. 4a)")
  parser.add_argument("--picture-lesson", type=int, default=None,
                      help="the pictured episode's lesson (default: current)")
  args = parser.parse_args(argv)
  try:
    task, params, record = load_run(args.checkpoint)
    if args.episodes < 1:
      raise ValueError(f"--episodes must be >= 1, got {args.episodes}")
    lessons = (task.lesson + 1 if args.lessons is None else args.lessons)
    if not 0 <= lessons <= len(task.lessons):
      raise ValueError(f"--lessons must be in 0..{len(task.lessons)}, got "
                       f"{lessons}")
    runs = [(model_kind(args.checkpoint), task, params, record)]
    if args.baseline:
      base_task, base_params, base_record = load_run(args.baseline)
      if base_task.lessons[:lessons] != task.lessons[:lessons]:
        raise ValueError(f"--baseline {args.baseline} trains other lessons "
                         f"than {args.checkpoint}")
      runs.append((model_kind(args.baseline), base_task, base_params,
                   base_record))
    for label, run_task, _, run_record in runs:
      prefix = f"{label}: " if len(runs) > 1 else ""
      print(f"{prefix}step {run_record['step']}, current lesson "
            f"{run_task.lesson + 1}, {args.episodes} episodes each")
    if lessons:
      columns = [(label, evaluate(run_task, run_params, lessons,
                                  args.episodes, args.seed))
                 for label, run_task, run_params, _ in runs]
      print("\n".join(_table(columns)))
    if args.picture:
      from experiments.shrdlu import picture  # Late: matplotlib.
      lesson = (task.lesson if args.picture_lesson is None
                else args.picture_lesson - 1)
      if not 0 <= lesson < len(task.lessons):
        raise ValueError(f"--picture-lesson must be in "
                         f"1..{len(task.lessons)}, got {lesson + 1}")
      episode = picture.record_episode(task, params,
                                       jax.random.PRNGKey(args.seed), lesson)
      picture.plot_episode(episode, args.picture)
      print(f"wrote {args.picture}")
  except (ValueError, CheckpointError) as error:
    parser.exit(2, f"dnc-shrdlu-eval: error: {error}\n")
  return 0


if __name__ == "__main__":
  sys.exit(main())
