"""Settings per task: the task, the model, the optimiser and the loop.

Each preset is a plain dict of overrides, so the command line can change any
field after choosing one. ``original`` reproduces the original release's
repeat-copy demo exactly; the ``default`` presets are tuned to train on a
2-core CPU in minutes; ``paper`` presets use the paper's sizes (GPU scale).
"""

from __future__ import annotations

import copy
from typing import Any, Dict

# The original release's train.py flags (deepmind/dnc): LSTM 64, memory
# 16 x 16, 4 read heads, 1 write head, clip 20, softplus strengths, TF1
# RMSProp lr 1e-4 eps 1e-10 after global-norm clipping at 50, batch 16.
_ORIGINAL_REPEAT_COPY = {
    "task": {},
    "model": dict(controller="lstm", hidden_size=64, memory_size=16,
                  word_size=16, num_reads=4, num_writes=1, clip_value=20.0,
                  strength_squash="softplus"),
    "optimizer": dict(name="rmsprop", learning_rate=1e-4, max_grad_norm=50.0,
                      decay=0.9, epsilon=1e-10),
    "loop": dict(steps=100_000, batch_size=16, log_every=100,
                 eval_every=1000, checkpoint_every=1000),
}


def _with(base: Dict[str, Any], **sections) -> Dict[str, Any]:
  preset = copy.deepcopy(base)
  for section, changes in sections.items():
    preset[section].update(changes)
  return preset


# Extended Data Fig. 4: feed-forward controller, link dense / K = 5 / none.
_COPY_PAPER = {
    "task": dict(num_bits=6, min_length=1, max_length=100),
    "model": dict(controller="feedforward", hidden_size=256, num_layers=1,
                  memory_size=128, word_size=16, num_reads=1, num_writes=1,
                  clip_value=20.0),
    "optimizer": dict(name="rmsprop", learning_rate=1e-4, max_grad_norm=50.0,
                      decay=0.9, epsilon=1e-10),
    "loop": dict(steps=200_000, batch_size=16, log_every=100,
                 eval_every=1000, checkpoint_every=1000),
}
_COPY_CPU = _with(_COPY_PAPER,
                  task=dict(max_length=20),
                  model=dict(memory_size=32, hidden_size=128),
                  optimizer=dict(name="adam", learning_rate=1e-3,
                                 epsilon=1e-8),
                  loop=dict(steps=20_000, eval_every=500,
                            checkpoint_every=500))
_LINKS = {"dense": dict(link_sparsity=None, use_temporal_links=True),
          "sparse": dict(link_sparsity=5, use_temporal_links=True),
          "nolink": dict(use_temporal_links=False)}

# Extended Data Fig. 1: 10 sequences, 10 memory slots, feed-forward controller.
_DYNAMIC_ALLOCATION = {
    "task": dict(num_bits=6, num_sequences=10, min_length=5, max_length=5),
    "model": dict(controller="feedforward", hidden_size=128, num_layers=1,
                  memory_size=10, word_size=16, num_reads=1, num_writes=1,
                  clip_value=20.0),
    "optimizer": dict(name="adam", learning_rate=1e-3, max_grad_norm=50.0,
                      epsilon=1e-8),
    "loop": dict(steps=30_000, batch_size=16, log_every=100, eval_every=500,
                 checkpoint_every=500),
}

PRESETS: Dict[str, Dict[str, Dict[str, Any]]] = {
    "repeat_copy": {
        "original": _ORIGINAL_REPEAT_COPY,
        "default": _with(_ORIGINAL_REPEAT_COPY,
                         optimizer=dict(name="adam", learning_rate=3e-3,
                                        epsilon=1e-8),
                         loop=dict(steps=20_000, eval_every=500,
                                   checkpoint_every=500,
                                   stop_below=("valid/bit_errors", 0.5))),
    },
    "copy": dict(
        **{"default": _with(_COPY_CPU, model=_LINKS["dense"])},
        **{name: _with(_COPY_CPU, model=links)
           for name, links in _LINKS.items()},
        **{f"paper_{name}": _with(_COPY_PAPER, model=links)
           for name, links in _LINKS.items()}),
    "dynamic_allocation_copy": {"default": _DYNAMIC_ALLOCATION},
}


def preset(task: str, name: str) -> Dict[str, Dict[str, Any]]:
  """A deep copy of preset ``name`` of ``task``; clear error if unknown."""
  if task not in PRESETS:
    raise ValueError(f"unknown task {task!r}; choose from {sorted(PRESETS)}")
  if name not in PRESETS[task]:
    raise ValueError(f"task {task!r} has no preset {name!r}; choose from "
                     f"{sorted(PRESETS[task])}")
  return copy.deepcopy(PRESETS[task][name])
