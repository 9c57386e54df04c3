"""The bAbI training loop of this checkout against an earlier revision's,
side by side in one run, in stories/s.

    python -m benchmarks.babi_loop_ab                    # against 62d992a
    python -m benchmarks.babi_loop_ab --baseline REV --steps 300 --rounds 2

Issue 16 set its speed target against the loop as it was at ``62d992a``
(11.6 stories/s, dnc1, batch 16, on the 2-core CPU). ``benchmarks.babi_speed``
times one training step of today's model; this times the whole loop
(batching, bucketing, the compiled step, logging) of each revision, the
baseline from a temporary ``git worktree`` of ``REV``, each in a fresh
process, alternating revisions for ``--rounds`` rounds:

  each process trains the ``dnc1`` preset from scratch (seed 0, so both see
  the same data where their batching agrees) and is stopped once its
  ``metrics.jsonl`` reaches ``--steps``; the figure is

    stories/s = batch x (steps - skip) / (time at steps - time at skip)

  from the metric lines' own time stamps, so start-up, compilation (every
  bucket has been seen long before ``--skip``: the rarest holds 1.6% of the
  stories) and the final evaluation are left out.

Each revision compiles its own kernels into the kernel cache. Report the
ratio: the machines are shared and the absolute figures move with load.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Optional

REPO = pathlib.Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "babi" / "en-10k"
# The commit whose loop issue 16 measured at 11.6 stories/s.
DEFAULT_BASELINE = "62d992a"


def train_lines(metrics: pathlib.Path) -> List[Dict]:
  """The ``kind == "train"`` records written so far (a partly written last
  line is skipped)."""
  if not metrics.is_file():
    return []
  out = []
  for line in metrics.read_text().splitlines():
    try:
      record = json.loads(line)
    except ValueError:
      continue
    if record.get("kind") == "train":
      out.append(record)
  return out


def stories_per_second(lines: List[Dict], batch: int, skip: int,
                       steps: int) -> float:
  """Stories/s between the metric lines at ``skip`` and ``steps``."""
  at = {r["step"]: r["time"] for r in lines}
  if skip not in at or steps not in at:
    raise ValueError(f"metric lines at steps {skip} and {steps} are needed "
                     f"(have {sorted(at)[:3]}...{sorted(at)[-3:]}); make "
                     "both multiples of --log-every")
  return batch * (steps - skip) / (at[steps] - at[skip])


def time_loop(source: pathlib.Path, data_dir: pathlib.Path, batch: int,
              steps: int, skip: int, log_every: int, timeout: float) -> float:
  """Trains the loop of the checkout at ``source`` in a fresh process until
  its metrics reach ``steps``; returns its stories/s."""
  with tempfile.TemporaryDirectory() as tmp:
    out = pathlib.Path(tmp) / "run"
    env = dict(os.environ, PYTHONPATH=str(source))
    command = [sys.executable, "-m", "experiments.babi_train",
               "--data-dir", str(data_dir), "--preset", "dnc1",
               "--out", str(out), "--steps", str(steps * 10),
               "--batch-size", str(batch), "--log-every", str(log_every),
               "--eval-every", str(steps * 10),
               "--checkpoint-every", str(steps * 10), "--no-progress"]
    process = subprocess.Popen(command, cwd=source, env=env,
                               stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + timeout
    try:
      while True:
        lines = train_lines(out / "metrics.jsonl")
        if lines and lines[-1]["step"] >= steps:
          return stories_per_second(lines, batch, skip, steps)
        if process.poll() is not None:
          raise RuntimeError(f"{source}: the loop exited ({process.returncode}"
                             f") before step {steps}:\n"
                             f"{process.stderr.read()[-2000:]}")
        if time.monotonic() > deadline:
          raise RuntimeError(f"{source}: step {steps} not reached within "
                             f"{timeout:.0f} s")
        time.sleep(2.0)
    finally:
      if process.poll() is None:
        process.kill()
        process.wait()


def main(argv: Optional[List[str]] = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--baseline", default=DEFAULT_BASELINE,
                      help="git revision to compare against")
  parser.add_argument("--data-dir", type=pathlib.Path, default=DEFAULT_DATA)
  parser.add_argument("--batch-size", type=int, default=16)
  parser.add_argument("--steps", type=int, default=250)
  parser.add_argument("--skip", type=int, default=100,
                      help="steps left out of the timing (compilation)")
  parser.add_argument("--log-every", type=int, default=50)
  parser.add_argument("--rounds", type=int, default=1)
  parser.add_argument("--timeout", type=float, default=1800.0,
                      help="seconds each process may take")
  parser.add_argument("--json", type=pathlib.Path, default=None)
  args = parser.parse_args(argv)
  if not 0 < args.skip < args.steps:
    parser.error(f"--skip must lie in (0, --steps), got {args.skip}")
  if args.skip % args.log_every or args.steps % args.log_every:
    parser.error("--skip and --steps must be multiples of --log-every")
  if not (args.data_dir / "qa1_single-supporting-fact_train.txt").is_file():
    parser.error(f"--data-dir {args.data_dir} holds no bAbI training files")

  worktree = pathlib.Path(tempfile.mkdtemp()) / "baseline"
  try:
    subprocess.run(["git", "worktree", "add", "--detach", "-q",
                    str(worktree), args.baseline], cwd=REPO, check=True)
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO,
                          check=True, capture_output=True,
                          text=True).stdout.strip()
    sources = {f"{args.baseline} (baseline)": worktree,
               f"{head} (this checkout)": REPO}
    figures: Dict[str, List[float]] = {name: [] for name in sources}
    for round_ in range(args.rounds):
      for name, source in sources.items():
        figure = time_loop(source, args.data_dir, args.batch_size,
                           args.steps, args.skip, args.log_every,
                           args.timeout)
        figures[name].append(figure)
        print(f"round {round_ + 1}: {name}: {figure:.1f} stories/s",
              flush=True)
  finally:
    subprocess.run(["git", "worktree", "remove", "--force", str(worktree)],
                   cwd=REPO, check=False)
    shutil.rmtree(worktree.parent, ignore_errors=True)

  base, ours = (statistics.median(v) for v in figures.values())
  print(f"\n| loop | stories/s (median of {args.rounds}) | ratio |")
  print("|---|---|---|")
  for name, values in figures.items():
    value = statistics.median(values)
    print(f"| {name} | {value:.1f} | {value / base:.2f}x |")
  print(f"\ndnc1, batch {args.batch_size}, steps {args.skip}-{args.steps} "
        "timed, from the metric lines' time stamps")
  if args.json:
    args.json.write_text(json.dumps(
        {"baseline": args.baseline, "head": head, "batch": args.batch_size,
         "steps": args.steps, "skip": args.skip, "figures": figures,
         "ratio": ours / base}, indent=2))
  return 0


if __name__ == "__main__":
  sys.exit(main())
