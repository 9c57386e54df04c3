"""``dnc-babi-train``: ``dnc-train --task babi`` under its old name.

Example::

  dnc-babi-train --data-dir path/to/tasks_1-20_v1-2/en-10k --out runs/babi

Every flag of ``dnc-train`` applies; presets (``--preset``) are the paper's
Extended Data Table 2 settings (``experiments/tasks/babi.py``).
"""

import sys

from experiments.cli import babi_main as main  # noqa: F401
from experiments.cli import babi_model_config
from experiments.tasks.babi import (PRESETS, make_predict,  # noqa: F401
                                    validation_subset)


def model_config(preset: str, vocab_size: int, **overrides):
  """The preset's model for ``vocab_size`` words; ``overrides`` not None win."""
  settings = dict(PRESETS[preset]["model"])
  settings.update({k: v for k, v in overrides.items() if v is not None})
  return babi_model_config(PRESETS[preset]["kind"], settings, vocab_size)


if __name__ == "__main__":
  sys.exit(main())
