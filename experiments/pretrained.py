"""Small trained models saved as one ``.npz``: parameters and their config.

The file holds every parameter as ``"<module>/<name>"`` and the
:class:`~dnc_jax.DNCConfig` and task settings as JSON text, with no pickled
objects, so it loads with ``allow_pickle=False``.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from typing import Any, Dict, Tuple

import numpy as np

from dnc_jax import DNCConfig

_META = "__meta__"


def save(path, config: DNCConfig, params, task: Dict[str, Any]):
  """Writes ``params`` (a Haiku params dict) with ``config`` and ``task``."""
  arrays = {f"{module}/{name}": np.asarray(value)
            for module, values in params.items()
            for name, value in values.items()}
  meta = json.dumps({"config": dataclasses.asdict(config), "task": task})
  np.savez_compressed(path, **arrays, **{_META: np.array(meta)})


def load(path) -> Tuple[DNCConfig, Dict[str, Dict[str, np.ndarray]],
                        Dict[str, Any]]:
  """``(config, params, task)`` as :func:`save` wrote them."""
  path = pathlib.Path(path)
  with np.load(path, allow_pickle=False) as data:
    if _META not in data.files:
      raise ValueError(f"{path} is not a dnc_jax pretrained file (no "
                       f"{_META} entry)")
    meta = json.loads(str(data[_META]))
    params: Dict[str, Dict[str, np.ndarray]] = {}
    for key in data.files:
      if key != _META:
        module, name = key.rsplit("/", 1)
        params.setdefault(module, {})[name] = data[key]
  return DNCConfig(**meta["config"]), params, meta["task"]
