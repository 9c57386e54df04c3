"""Extended Data Fig. 4 in small, and the NTM beside it.

Trains (or reads) one copy run per setting with the same budget and the
same seed (so the same data stream): the DNC with a dense, a K-sparse and
no link, and the Neural Turing Machine of the same sizes (preset ``ntm``).
Then prints the fraction of validation sequences copied perfectly at
several steps and at the end, and on longer sequences than trained, as a
Markdown table (also written to ``<out>/copy_comparison.json``)::

  python -m experiments.copy_comparison --out runs --steps 20000
  python -m experiments.copy_comparison --out runs --settings ntm
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

SETTINGS = ("dense", "sparse", "nolink", "ntm")
LABELS = {"dense": "DNC, dense link", "sparse": "DNC, sparse link (K = 5)",
          "nolink": "DNC, no link", "ntm": "NTM"}
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
  """One row per setting: perfect copies at the checkpoints and at the end."""
  steps = sorted({int(s) for r in results.values() for s in r["perfect_at"]})
  head = ("| model | " + "".join(f"step {s} | " for s in steps)
          + "final (step) | first step >= 99% | longer lengths, final |")
  rule = "|" + "---|" * (len(steps) + 4)
  rows = []
  for name, r in results.items():
    perfect_at = {int(s): v for s, v in r["perfect_at"].items()}
    cells = "".join(f"{perfect_at.get(s, float('nan')):.2f} | "
                    for s in steps)
    rows.append(f"| {LABELS.get(name, name)} | {cells}"
                f"{r['final_perfect']:.2f} ({r['final_step']}) | "
                f"{r['first_step_99']} | {r['final_longer_perfect']:.2f} |")
  return "\n".join([head, rule] + rows)


def _settings(text: str) -> List[str]:
  names = [n.strip() for n in text.split(",") if n.strip()]
  bad = [n for n in names if n not in SETTINGS]
  if bad or not names:
    raise argparse.ArgumentTypeError(
        f"choose from {','.join(SETTINGS)}, got {text!r}")
  return names


def main(argv: Optional[List[str]] = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--out", default="runs", help="folder of the runs")
  parser.add_argument("--steps", type=int, default=None,
                      help="training steps per run (default: the preset's)")
  parser.add_argument("--settings", type=_settings, default=list(SETTINGS),
                      help="comma-separated settings to train (default: "
                      "all); runs already in --out are reported too")
  parser.add_argument("--report-only", action="store_true",
                      help="only read runs already trained")
  args = parser.parse_args(argv)
  out = pathlib.Path(args.out)
  results = {}
  for name in SETTINGS:
    run_dir = out / f"copy-{name}"
    if not args.report_only and name in args.settings:
      settings = presets.preset("copy", name)
      if args.steps:
        settings["loop"]["steps"] = args.steps
      settings["eval_batch_size"] = 100
      run(settings, "copy", run_dir, resume=True, progress=False)
    if (run_dir / "metrics.jsonl").is_file():
      results[name] = summarise(run_dir)
  if not results:
    parser.exit(2, f"no copy runs in {out}\n")
  print(table(results))
  (out / "copy_comparison.json").write_text(json.dumps(results, indent=2))
  return 0


if __name__ == "__main__":
  sys.exit(main())
