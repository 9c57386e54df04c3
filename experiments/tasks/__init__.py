"""The tasks the trainer knows, and their presets (plain data).

``PRESETS[task][name]`` is a dict of sections: ``task`` (the task's own
settings), ``model`` (:class:`dnc_jax.DNCConfig` fields), ``optimizer``
(:class:`experiments.loop.OptimizerConfig`), ``loop``
(:class:`experiments.loop.LoopConfig`); bAbI presets add ``kind``
(``dnc``, ``ntm`` or ``lstm``; bit tasks add ``kind="ntm"`` to their NTM
presets); the graph tasks and Mini-SHRDLU register here too.
"""

from __future__ import annotations

import copy
from typing import Any, Dict

from experiments.tasks import babi, bit, graph, shrdlu
from experiments.tasks.base import Batch, Task, TaskBase  # noqa: F401

PRESETS: Dict[str, Dict[str, Dict[str, Any]]] = dict(
    bit.PRESETS, babi=babi.PRESETS, shrdlu=shrdlu.PRESETS, **graph.PRESETS)
DEFAULT_PRESET = dict({"babi": "dnc1", "shrdlu": "cpu"},
                      **graph.DEFAULT_PRESET)


def preset(task: str, name: str) -> Dict[str, Any]:
  """A deep copy of preset ``name`` of ``task``; clear error if unknown."""
  if task not in PRESETS:
    raise ValueError(f"unknown task {task!r}; choose from {sorted(PRESETS)}")
  if name not in PRESETS[task]:
    raise ValueError(f"task {task!r} has no preset {name!r}; choose from "
                     f"{sorted(PRESETS[task])}")
  return copy.deepcopy(PRESETS[task][name])
