"""Haiku models the experiments train: a DNC unrolled over time."""

from __future__ import annotations

import haiku as hk

from dnc_jax import DNC, DNCConfig


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
