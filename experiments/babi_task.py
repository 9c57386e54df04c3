"""Deprecated alias of :mod:`experiments.tasks.babi`."""

from experiments import _deprecated
from experiments.tasks.babi import *  # noqa: F401,F403
from experiments.tasks.babi import (  # noqa: F401
    BUCKETS, FAILED_ABOVE, PAPER_BEST_MEAN_ERROR, PAPER_DNC1_MEAN,
    PAPER_DNC1_MEAN_ERROR, BabiBatch, BabiTask, EncodedStory, bucket_of,
    encode, error_table, evaluate, markdown_table, one_hot_inputs, pad_batch,
    partial_tasks)

_deprecated.moved("experiments.babi_task", "experiments.tasks.babi")
