"""Extended Data Fig. 4 in small: copy with a dense, a K-sparse and no link.

Trains (or reads) one run per link setting with the same budget, then prints
the fraction of validation sequences copied perfectly at several steps, and
on longer sequences than trained, as a Markdown table (also written to
``<out>/copy_comparison.json``)::

  python -m experiments.copy_comparison --out runs --steps 20000
  python -m experiments.copy_comparison --out runs --report-only
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
from typing import Dict, List, Optional

from experiments import tasks as presets
from experiments.cli import run

SETTINGS = ("dense", "sparse", "nolink")
CHECKPOINTS = (500, 1000, 2000, 5000, 10000, 20000)


def read_evaluations(run_dir: pathlib.Path) -> List[Dict]:
  lines = (run_dir / "metrics.jsonl").read_text().splitlines()
  return [json.loads(l) for l in lines if '"kind": "eval"' in l]


def summarise(run_dir: pathlib.Path) -> Dict:
  evaluations = read_evaluations(run_dir)
  by_step = {e["step"]: e for e in evaluations}
  first = next((e["step"] for e in evaluations if e["valid/perfect"] >= 0.99),
               None)
  last = evaluations[-1]
  return {
      "perfect_at": {s: by_step[s]["valid/perfect"] for s in CHECKPOINTS
                     if s in by_step},
      "first_step_99": first,
      "final_step": last["step"],
      "final_perfect": last["valid/perfect"],
      "final_longer_perfect": last["longer/perfect"],
  }


def table(results: Dict[str, Dict]) -> str:
  steps = sorted({s for r in results.values() for s in r["perfect_at"]})
  head = ("| link | " + " | ".join(f"step {s}" for s in steps)
          + " | first step >= 99% | longer lengths, final |")
  rule = "|" + "---|" * (len(steps) + 3)
  rows = []
  for name, r in results.items():
    cells = [f"{r['perfect_at'].get(s, float('nan')):.2f}" for s in steps]
    rows.append(f"| {name} | " + " | ".join(cells)
                + f" | {r['first_step_99']} | {r['final_longer_perfect']:.2f} |")
  return "\n".join([head, rule] + rows)


def main(argv: Optional[List[str]] = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--out", default="runs", help="folder of the runs")
  parser.add_argument("--steps", type=int, default=None,
                      help="training steps per run (default: the preset's)")
  parser.add_argument("--report-only", action="store_true",
                      help="only read runs already trained")
  args = parser.parse_args(argv)
  out = pathlib.Path(args.out)
  results = {}
  for name in SETTINGS:
    run_dir = out / f"copy-{name}"
    if not args.report_only:
      settings = presets.preset("copy", name)
      if args.steps:
        settings["loop"]["steps"] = args.steps
      settings["eval_batch_size"] = 100
      run(settings, "copy", run_dir, resume=True, progress=False)
    results[name] = summarise(run_dir)
  print(table(results))
  (out / "copy_comparison.json").write_text(json.dumps(results, indent=2))
  return 0


if __name__ == "__main__":
  sys.exit(main())
