"""Deprecated alias of :mod:`experiments.tasks.bit`."""

from experiments import _deprecated
from experiments.tasks.bit import *  # noqa: F401,F403
from experiments.tasks.bit import (  # noqa: F401
    TASKS, Batch, BitTask, Copy, DynamicAllocationCopy, RepeatCopy,
    bit_metrics, sigmoid_cross_entropy)

_deprecated.moved("experiments.bit_tasks", "experiments.tasks.bit")
