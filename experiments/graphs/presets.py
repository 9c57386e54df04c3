"""Graph-task presets as plain data, in the trainer's preset format.

``PRESETS[task][name]`` has sections ``kind`` (``dnc`` or ``lstm``),
``task`` (``protocol.CurriculumTask`` arguments), ``model``
(``dnc_jax.DNCConfig`` fields), ``optimizer``
(``experiments.loop.OptimizerConfig``) and ``loop``
(``experiments.loop.LoopConfig``).

* ``paper``: Extended Data Table 2 (PROTOCOL §3.1): traversal 3 x 256 LSTM,
  memory 256 x 50, 5 read heads, batch 2, lr 1e-5; inference 3 x 256,
  128 x 50, 5 heads, batch 32, lr 1e-5; shortest path 2 x 256, 128 x 50,
  5 heads, batch 1, lr 3e-6, beta 0.8. RMSProp (momentum 0.9, NOT STATED
  in the paper; as the project's bAbI presets); controller-activation
  gradients clipped to +-10. Evaluation every 100 batches (2,000 for
  shortest path). The step count is a cap (the curriculum decides
  progress); the paper gives none.
* ``cpu``: the same tasks sized for a 2-core CPU (one 128-unit LSTM,
  memory 64 x 32 for traversal, 32 x 32 for inference and shortest path,
  2 read heads, batch 16 (4 for shortest path), Adam 1e-3 (3e-3 for
  inference), evaluation every 200 batches); expect early lessons only.
  Measured on traversal lesson 1: W = 32 learns the copied digits about
  twice as fast as W = 16; Adam 3e-3 then fixes sharp reads (weight 0.98)
  on a wrong slot and stalls at about 8% (50k examples), while 1e-3 keeps
  the reads diffuse and the writes clean (write gate 0.9) for longer. Memory is not a parameter
  shape, so a cpu-trained network can be evaluated with more slots
  (``dnc-graph-eval --memory-size``).
* ``lstm``: the paper's LSTM-only baseline (no memory), the controller
  sizes of ``paper``; ``cpu_lstm``: the LSTM baseline at ``cpu`` sizes.

A controller of more than one layer is the DNC's ``deep_lstm`` (the plain
``lstm`` controller has one layer).
"""

from __future__ import annotations

import copy
from typing import Any, Dict

_RMSPROP = dict(name="rmsprop", max_grad_norm=50.0, decay=0.9,
                epsilon=1e-10, momentum=0.9)
_ADAM = dict(name="adam", learning_rate=1e-3, max_grad_norm=50.0,
             epsilon=1e-8)


def _paper(hidden_layers: int, memory: int, batch: int, lr: float,
           eval_every: int, task: Dict[str, Any]) -> Dict[str, Any]:
  return {
      "kind": "dnc",
      "task": dict(task),
      "model": dict(controller="deep_lstm" if hidden_layers > 1 else "lstm",
                    hidden_size=256,
                    num_layers=hidden_layers, memory_size=memory,
                    word_size=50, num_reads=5, num_writes=1,
                    controller_grad_clip=10.0),
      "optimizer": dict(_RMSPROP, learning_rate=lr),
      "loop": dict(steps=2_000_000, batch_size=batch, log_every=100,
                   eval_every=eval_every, checkpoint_every=eval_every * 10),
  }


def _cpu(paper: Dict[str, Any], memory: int, batch: int,
         lr: float) -> Dict[str, Any]:
  preset = copy.deepcopy(paper)
  preset["model"].update(controller="lstm", hidden_size=128, num_layers=1,
                         memory_size=memory, word_size=32, num_reads=2,
                         controller_grad_clip=None)
  preset["optimizer"] = dict(_ADAM, learning_rate=lr)
  preset["loop"].update(steps=20_000, batch_size=batch, log_every=50,
                        eval_every=200, checkpoint_every=400)
  return preset


def _lstm(paper: Dict[str, Any]) -> Dict[str, Any]:
  preset = copy.deepcopy(paper)
  preset["kind"] = "lstm"
  return preset


_PAPER = {
    "traversal": _paper(3, 256, 2, 1e-5, 100, {}),
    "inference": _paper(3, 128, 32, 1e-5, 100, {}),
    "shortest_path": _paper(2, 128, 1, 3e-6, 2000, {"beta": 0.8}),
}

# (memory N, batch, learning rate).
_CPU = {"traversal": (64, 16, 1e-3), "inference": (32, 16, 3e-3),
        "shortest_path": (32, 4, 1e-3)}

PRESETS: Dict[str, Dict[str, Dict[str, Any]]] = {
    task: {"paper": paper, "cpu": _cpu(paper, *_CPU[task]),
           "lstm": _lstm(paper), "cpu_lstm": _lstm(_cpu(paper, *_CPU[task]))}
    for task, paper in _PAPER.items()
}
DEFAULT_PRESET = {task: "paper" for task in PRESETS}


def preset(task: str, name: str) -> Dict[str, Any]:
  """A deep copy of preset ``name`` of ``task``; ValueError naming either."""
  if task not in PRESETS:
    raise ValueError(f"unknown graph task {task!r}; choose from "
                     f"{sorted(PRESETS)}")
  if name not in PRESETS[task]:
    raise ValueError(f"graph task {task!r} has no preset {name!r}; choose "
                     f"from {sorted(PRESETS[task])}")
  return copy.deepcopy(PRESETS[task][name])
