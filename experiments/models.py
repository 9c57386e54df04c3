"""Haiku models the experiments train: a DNC unrolled over time."""

from __future__ import annotations

from typing import Callable, NamedTuple, Optional

import haiku as hk

from dnc_jax import DNC, DNCConfig, unroll


def unrolled_dnc(config: DNCConfig) -> hk.Transformed:
  """``apply(params, inputs [T, B, X]) -> logits [T, B, output_size]``."""

  def forward(inputs):
    core = DNC(config)
    outputs, _ = hk.dynamic_unroll(core, inputs,
                                   core.initial_state(inputs.shape[1]))
    return outputs

  return hk.without_apply_rng(hk.transform(forward))


def recording_dnc(config: DNCConfig) -> hk.Transformed:
  """Like :func:`unrolled_dnc`, also returning what the memory did.

  ``apply(params, inputs) -> (logits [T, B, Y], interface, states)`` where
  ``interface`` is the :class:`~dnc_jax.MemoryInterface` of every step (leading
  axis ``T``) and ``states`` the :class:`~dnc_jax.DNCState` after every step.
  Parameters are shared with :func:`unrolled_dnc`.
  """

  def forward(inputs):
    core = DNC(config, return_interface=True)
    (outputs, interface), states = hk.dynamic_unroll(
        core, inputs, core.initial_state(inputs.shape[1]),
        return_all_states=True)
    return outputs, interface, states

  return hk.without_apply_rng(hk.transform(forward))


def babi_model(kind: str, config: DNCConfig,
               remat_chunk: Optional[int] = None) -> hk.Transformed:
  """``apply(params, one_hot [T, B, V]) -> logits [T, B, V]`` for bAbI.

  ``kind`` is ``"dnc"`` (a :class:`~dnc_jax.DNC` with ``config``) or
  ``"lstm"``: the paper's LSTM baseline, one ``hk.LSTM`` of
  ``config.hidden_size`` units and a linear read-out, no memory.
  """
  if kind not in ("dnc", "lstm"):
    raise ValueError(f"model kind must be 'dnc' or 'lstm', got {kind!r}")

  def forward(inputs):
    if kind == "dnc":
      core = DNC(config)
    else:
      core = hk.DeepRNN([hk.LSTM(config.hidden_size, name="lstm"),
                         hk.Linear(config.output_size, name="output")])
    outputs, _ = unroll(core, inputs, core.initial_state(inputs.shape[1]),
                        remat_chunk=remat_chunk)
    return outputs

  return hk.without_apply_rng(hk.transform(forward))


class CoreModel(NamedTuple):
  """A model a step at a time, for closed-loop tasks.

  Attributes:
    initial_state: ``initial_state(params, batch_size) -> state``.
    step: ``step(params, x [B, X], state) -> (y [B, Y], state)``.
  """

  initial_state: Callable
  step: Callable


class Model(NamedTuple):
  """What the trainer hands a task: the sequence model and, if any, its core.

  Attributes:
    init: ``init(rng, inputs [T, B, X]) -> params``.
    apply: ``apply(params, inputs [T, B, X]) -> outputs [T, B, Y]``.
    core: the same parameters a step at a time (``None`` if unavailable).
  """

  init: Callable
  apply: Callable
  core: Optional[CoreModel] = None


def dnc_core(config: DNCConfig) -> CoreModel:
  """:func:`unrolled_dnc`'s DNC one step at a time (same parameters)."""

  def functions():
    core = DNC(config)

    def init(inputs):
      return core(inputs, core.initial_state(inputs.shape[0]))

    def initial_state(batch_size):
      return core.initial_state(batch_size)

    def step(inputs, state):
      return core(inputs, state)

    return init, (initial_state, step)

  transformed = hk.without_apply_rng(hk.multi_transform(functions))
  initial_state, step = transformed.apply
  return CoreModel(initial_state, step)


def dnc_model(config: DNCConfig) -> Model:
  """The DNC as a :class:`Model`: unrolled, and a step at a time."""
  unrolled = unrolled_dnc(config)
  return Model(unrolled.init, unrolled.apply, dnc_core(config))
