"""``dnc-plot``: draw a trained run's memory at work.

Example::

  dnc-plot --run runs/repeat_copy-default            # writes PNGs there
  dnc-plot --run runs/dynamic_allocation_copy-default --longer --example 3
  dnc-plot --run runs/rc-seeds --member 2           # a sweep's member 2
"""

from __future__ import annotations

import argparse
import pathlib
import sys
from typing import List, Optional

import numpy as np

from dnc_jax import DNCConfig
from experiments.checkpoints import Checkpointer, CheckpointError
from experiments.loop import OptimizerConfig, load_params, make_run_folder
from experiments.models import unrolled_dnc
from experiments.tasks import bit
from experiments.plotting import plot_memory, record


def load_run(run: pathlib.Path, step: Optional[int] = None,
             member: Optional[int] = None):
  """``(task, DNCConfig, params)`` of a ``dnc-train`` run's checkpoint;
  for a sweep, member ``member`` (default 0)."""
  checkpointer = Checkpointer(run / "checkpoints", create=False)
  saved = checkpointer.read_record(step)["run"]
  checkpointer.close()
  if "task_name" not in saved:
    raise CheckpointError(f"{run} is not a dnc-train bit-task run")
  if saved.get("kind", "dnc") != "dnc":
    raise CheckpointError(f"{run} trains model kind {saved['kind']!r}: "
                          "dnc-plot draws a DNC's memory only")
  task = bit.TASKS[saved["task_name"]](**saved["task"])
  config = DNCConfig(**saved["model"])
  inputs = task.sample(np.random.default_rng(0), 1).inputs
  if saved.get("sweep"):
    from experiments import sweep  # pylint: disable=import-outside-toplevel
    members, _ = sweep.load_members(run, unrolled_dnc(config).init, saved,
                                    inputs, step=step)
    member = member or 0
    if not 0 <= member < len(members):
      raise ValueError(f"--member {member}: the sweep in {run} has "
                       f"{len(members)} members (0 to {len(members) - 1})")
    return task, config, members[member]
  if member is not None:
    raise ValueError(f"--member applies to sweeps; {run} is one run")
  params, _, _ = load_params(run, unrolled_dnc(config).init,
                             OptimizerConfig(**saved["optimizer"]), inputs,
                             step=step)
  return task, config, params


def main(argv: Optional[List[str]] = None) -> int:
  parser = argparse.ArgumentParser(
      prog="dnc-plot", description=__doc__.split("\n\n")[0])
  parser.add_argument("--run", required=True, help="a dnc-train run folder")
  parser.add_argument("--step", type=int, default=None,
                      help="checkpoint step (default: the latest)")
  parser.add_argument("--example", type=int, default=0,
                      help="which sequence of the batch to draw")
  parser.add_argument("--longer", action="store_true",
                      help="draw a longer sequence than trained on")
  parser.add_argument("--seed", type=int, default=0, help="batch seed")
  parser.add_argument("--member", type=int, default=None,
                      help="a sweep's member (default 0)")
  parser.add_argument("--out", default=None,
                      help="folder for the PNG (default: the run folder)")
  args = parser.parse_args(argv)
  if args.example < 0:
    parser.error(f"--example must be >= 0, got {args.example}")
  run = pathlib.Path(args.run)
  if not (run / "checkpoints").is_dir():
    parser.exit(2, f"dnc-plot: error: {run} is not a run folder (no "
                "checkpoints/ in it)\n")
  try:
    task, config, params = load_run(run, args.step, args.member)
  except (CheckpointError, KeyError, ValueError) as error:
    parser.exit(2, f"dnc-plot: error: {error}\n")
  if args.longer:
    task = task.longer()
  batch = task.sample(np.random.default_rng(args.seed), args.example + 1)
  rec = record(config, params, batch, example=args.example)
  out = pathlib.Path(args.out) if args.out else run
  try:
    make_run_folder(out)
  except CheckpointError as error:
    parser.exit(2, f"dnc-plot: error: {error}\n")
  kind = "longer" if args.longer else "trained"
  suffix = "" if args.member is None else f"-member{args.member}"
  path = out / f"memory-{kind}-{args.example}{suffix}.png"
  plot_memory(rec, path, title=f"{type(task).__name__} ({kind} lengths)")
  print(path)
  return 0


if __name__ == "__main__":
  sys.exit(main())
