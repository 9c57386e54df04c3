"""Old module names kept as aliases of the modules that replaced them."""

from __future__ import annotations

import warnings


def moved(old: str, new: str):
  """Warns once that module ``old`` is now ``new``."""
  warnings.warn(f"{old} moved to {new}; import it from there",
                DeprecationWarning, stacklevel=3)
