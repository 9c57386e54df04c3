r"""Trains a Mini-SHRDLU agent through the Table 6 curriculum: an alias of
the one trainer, ``dnc-train --task shrdlu``.

  python -m experiments.shrdlu.train --preset cpu --out runs/shrdlu \
      [--steps N] [--resume] [--seed S]
  dnc-shrdlu-train --preset cpu --out runs/shrdlu      # the same

Every ``dnc-train`` flag works (``--eval-every``, ``--batch-size``,
``--hidden-size``, ``--lam``, ...). The run folder gets ``metrics.jsonl``,
``settings.json`` and checkpoints (both networks' parameters, the optimiser
state and the curriculum); ``--resume`` continues bitwise-identically.
"""

from __future__ import annotations

import sys
from typing import List, Optional

from experiments import cli


def main(argv: Optional[List[str]] = None) -> int:
  """``dnc-shrdlu-train``: ``dnc-train --task shrdlu``."""
  return cli.main(argv, prog="dnc-shrdlu-train", task="shrdlu")


if __name__ == "__main__":
  sys.exit(main())
