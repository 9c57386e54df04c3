"""The graph tasks (traversal, inference, shortest path) for the trainer.

The tasks, curricula and presets live in :mod:`experiments.graphs`; this
module is their registry entry: :class:`GraphConfig` (the ``task`` section
of a preset, one flag per field), :func:`make_task` (a
:class:`experiments.graphs.protocol.CurriculumTask`, a
:class:`~experiments.tasks.base.Task`), :data:`PRESETS` and the models
(``kind``: the DNC, or the paper's LSTM-only baseline), both with a core a
step at a time for the closed-loop shortest-path step.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, Optional

import haiku as hk

from dnc_jax import DNCConfig
from experiments.graphs import curriculum, encoding, presets
from experiments.graphs import protocol
from experiments.models import CoreModel, Model, dnc_model

TASKS = ("traversal", "inference", "shortest_path")
KINDS = ("dnc", "lstm")
PRESETS: Dict[str, Dict[str, Dict[str, Any]]] = presets.PRESETS
DEFAULT_PRESET = dict(presets.DEFAULT_PRESET)

# Fields of GraphConfig that only one task reads.
_SHORTEST_PATH_ONLY = ("beta", "slack")
_INFERENCE_ONLY = ("ambiguous_fraction",)


@dataclasses.dataclass(frozen=True)
class GraphConfig:
  """A graph task's own settings.

  Attributes:
    lesson: the curriculum lesson to start from (1-based).
    eval_episodes: fresh current-lesson episodes per evaluation (default:
      the curriculum's, 100; 50 for shortest path).
    eval_batch_size: episodes per evaluation forward pass.
    beta: shortest path: probability that a step follows the target (DAgger
      mixing); evaluation always uses 0.
    slack: shortest path: a path this many steps longer than the shortest
      still counts as right.
    ambiguous_fraction: inference only, not the paper's: the share of
      training queries drawn among those the relation's last edge label
      alone cannot answer (``experiments.graphs.tasks.Inference``); 0
      draws the lesson's own queries, as evaluations always do. Fixed for
      a run (refused on ``--resume``).
  """

  lesson: int = 1
  eval_episodes: Optional[int] = None
  eval_batch_size: int = 50
  beta: float = 0.8
  slack: int = 0
  ambiguous_fraction: float = 0.0

  def __post_init__(self):
    if self.eval_episodes is not None and self.eval_episodes < 1:
      raise ValueError(f"eval_episodes must be >= 1, got "
                       f"{self.eval_episodes}")
    if self.eval_batch_size < 1:
      raise ValueError(f"eval_batch_size must be >= 1, got "
                       f"{self.eval_batch_size}")
    if not 0 <= self.beta <= 1:
      raise ValueError(f"beta must be in [0, 1], got {self.beta}")
    if self.slack < 0:
      raise ValueError(f"slack must be >= 0, got {self.slack}")
    if not 0 <= self.ambiguous_fraction <= 1:
      raise ValueError(f"ambiguous_fraction must be in [0, 1], got "
                       f"{self.ambiguous_fraction}")


def check_task(name: str):
  """ValueError naming ``name`` unless it is a graph task."""
  if name not in TASKS:
    raise ValueError(f"unknown graph task {name!r}; choose from "
                     f"{list(TASKS)}")


def make_task(name: str, config: GraphConfig = GraphConfig()
              ) -> "protocol.CurriculumTask":
  """The task ``name`` under its paper curriculum, from ``config``.

  Raises:
    ValueError: an unknown task or a lesson out of range, named.
  """
  check_task(name)
  schedule = curriculum.paper_schedule(name)
  if config.eval_episodes is not None:
    schedule = dataclasses.replace(schedule,
                                   eval_episodes=config.eval_episodes)
  kwargs = {}
  if name == "shortest_path":
    kwargs = dict(beta=config.beta, slack=config.slack)
  elif name == "inference" and config.ambiguous_fraction:
    kwargs = dict(ambiguous_fraction=config.ambiguous_fraction)
  return protocol.CurriculumTask(
      name, lesson=config.lesson, schedule=schedule,
      eval_batch_size=config.eval_batch_size, **kwargs)


def task_fields(name: str):
  """The GraphConfig fields that apply to task ``name``."""
  fields = {f.name for f in dataclasses.fields(GraphConfig)}
  if name != "shortest_path":
    fields -= set(_SHORTEST_PATH_ONLY)
  if name != "inference":
    fields -= set(_INFERENCE_ONLY)
  return fields


# --- Models. ---------------------------------------------------------------

def lstm_model(hidden_size: int, num_layers: int = 1) -> Model:
  """The LSTM-only baseline: ``num_layers`` stacked LSTMs and a read-out.

  ``apply(params, inputs [T, B, 92]) -> logits [T, B, 90]``; ``core`` runs
  the same parameters a step at a time.
  """

  def make_core():
    layers = [hk.LSTM(hidden_size, name=f"lstm_{i}")
              for i in range(num_layers)]
    return hk.DeepRNN(layers + [hk.Linear(encoding.OUTPUT_SIZE,
                                          name="output")])

  def forward(inputs):
    core = make_core()
    outputs, _ = hk.dynamic_unroll(core, inputs,
                                   core.initial_state(inputs.shape[1]))
    return outputs

  unrolled = hk.without_apply_rng(hk.transform(forward))

  def functions():
    core = make_core()

    def init(inputs):
      return core(inputs, core.initial_state(inputs.shape[0]))

    return init, (core.initial_state, core)

  stepped = hk.without_apply_rng(hk.multi_transform(functions))
  initial_state, step = stepped.apply
  return Model(unrolled.init, unrolled.apply, CoreModel(initial_state, step))


def model_config(kind: str, model: Dict[str, Any]) -> Dict[str, Any]:
  """The model record: every DNCConfig field (dnc), or the LSTM's sizes.

  Raises:
    ValueError: an unknown kind or a bad model setting.
  """
  if kind not in KINDS:
    raise ValueError(f"model kind must be one of {list(KINDS)}, got "
                     f"{kind!r}")
  if kind == "lstm":
    hidden, layers = model.get("hidden_size", 64), model.get("num_layers", 1)
    for name, value in (("hidden_size", hidden), ("num_layers", layers)):
      if not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    return {"hidden_size": hidden, "num_layers": layers}
  try:
    config = DNCConfig(output_size=encoding.OUTPUT_SIZE,
                       input_size=encoding.INPUT_SIZE, **model)
  except TypeError as error:
    raise ValueError(f"bad model settings: {error}") from None
  return dataclasses.asdict(config)


def make_model(kind: str, record: Dict[str, Any],
               memory_size: Optional[int] = None) -> Model:
  """The model of a record :func:`model_config` made; ``memory_size``
  changes N (not a parameter shape: the same parameters run)."""
  if kind == "lstm":
    return lstm_model(record["hidden_size"], record["num_layers"])
  if memory_size is not None:
    record = dict(record, memory_size=memory_size)
  return dnc_model(DNCConfig(**record))
