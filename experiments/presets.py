"""Deprecated alias: presets are data in :mod:`experiments.tasks`."""

from experiments import _deprecated
from experiments.tasks import preset  # noqa: F401
from experiments.tasks.bit import PRESETS  # noqa: F401

_deprecated.moved("experiments.presets", "experiments.tasks (preset())")
