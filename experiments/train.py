"""``dnc-train``: now :mod:`experiments.cli`; this name keeps working.

``python -m experiments.train`` and ``from experiments.train import run``
behave as before.
"""

import sys

from experiments.cli import (EVAL_SEED, build_parser,  # noqa: F401
                             make_evaluate, run, settings_from_args)
from experiments.cli import main as _main


def main(argv=None) -> int:
  return _main(argv)


if __name__ == "__main__":
  sys.exit(main())
