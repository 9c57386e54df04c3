"""What runs in each loop iteration of a compiled step: a kernel count.

    python -m benchmarks.speed --memory-sizes 256 --hlo-dir runs/hlo
    python -m benchmarks.hlo_loops runs/hlo/train-N256-dense-auto.hlo

Reads optimised HLO text (``benchmarks.speed --hlo-dir``) and prints, for
every ``while`` loop (the unroll's scans: forward, and backward in a
training step), how many of each operation its body runs per iteration.
On a GPU each fusion or custom call is a kernel launch; when a step is a
few microseconds per launch, this count times the launch cost is the
step's time (a profile without a profiler).
"""

from __future__ import annotations

import argparse
import collections
import re
import sys
from typing import Dict, List, Optional

# Operations that become work of their own (a kernel, a library call, a copy)
# rather than a view or a scalar of loop bookkeeping.
KERNEL_OPS = ("fusion", "custom-call", "copy", "sort", "scatter", "gather",
              "dot", "convolution", "reduce", "dynamic-slice",
              "dynamic-update-slice", "all-reduce", "conditional", "while",
              "call")

_COMPUTATION = re.compile(r"^(?:ENTRY )?%?([\w.\-]+) .*\{$")
_OP = re.compile(r"=\s+\S+\s+([a-z][\w\-]*)\(")
_LOOP = re.compile(r"\swhile\(.*?body=%?([\w.\-]+)")


def computations(hlo: str) -> Dict[str, List[str]]:
  """Each computation's instruction lines, by name."""
  found, current = {}, None
  for line in hlo.splitlines():
    match = _COMPUTATION.match(line)
    if match:
      current = found.setdefault(match.group(1), [])
    elif current is not None and line.startswith(" "):
      current.append(line)
  return found


def loop_bodies(hlo: str) -> Dict[str, collections.Counter]:
  """Per ``while`` body: a count of each operation in :data:`KERNEL_OPS`."""
  bodies = computations(hlo)
  result = {}
  for name in _LOOP.findall(hlo):
    counts = collections.Counter()
    for line in bodies.get(name, []):
      match = _OP.search(line)
      if match and match.group(1) in KERNEL_OPS:
        counts[match.group(1)] += 1
    result[name] = counts
  return result


def main(argv: Optional[List[str]] = None) -> int:
  parser = argparse.ArgumentParser(
      description=__doc__.split("\n\n")[0],
      formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("files", nargs="+", help="optimised HLO text files")
  args = parser.parse_args(argv)
  for path in args.files:
    with open(path) as f:
      loops = loop_bodies(f.read())
    print(f"{path}: {len(loops)} loop(s)")
    for name, counts in loops.items():
      detail = ", ".join(f"{op} {n}" for op, n in counts.most_common())
      print(f"  {name}: {sum(counts.values())} per iteration ({detail})")
  return 0


if __name__ == "__main__":
  sys.exit(main())
