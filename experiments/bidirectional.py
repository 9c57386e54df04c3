"""Franke et al.'s (2018) bidirectional DNC (BrsDNC) for whole-input tasks.

A backward LSTM first reads the whole input sequence from its end to its
start; its output at step ``t``, ``b_t``, has seen the inputs ``t..T-1``
(and nothing before ``t``). Then the DNC runs forward as usual, taking
``[x_t; b_t]`` at step ``t``. Inside it, following Franke et al.'s code
(``MANN.bidirectional`` of their ADNC release), the forward controller (an
LSTM) reads ``[x_t; r_{t-1}]`` and the backward state joins its output:
the "controller output" the DNC sees is ``[h_t; b_t]``, which parameterises
the memory interface (layer-normalised with ``interface_layer_norm``) and
takes the output layer's bypass (with bypass dropout in training). So the
output layer sees ``[dropout([h_t; b_t]); r_t]``: the forward controller,
the backward state and the read words.

For bAbI this is legitimate: the whole story and its questions are input
before any answer is scored, so reading the story with the question known
(through ``b_t``) uses nothing the model should not have. It is not a
model for closed-loop tasks, whose inputs depend on the outputs.

Choices where the paper leaves it open (docs/maths.md §8.8):

- The backward LSTM has the forward controller's size (``hidden_size``) and
  layer normalisation (``controller_layer_norm``): Franke et al. build both
  from one controller configuration (172 units, layer norm, for bAbI).
- The forward controller reads ``[x_t; r_{t-1}]``, this library's DNC
  convention; Franke et al.'s reads ``[x_t; previous memory-unit output]``,
  which also holds the previous (dropped) ``[h_{t-1}; b_{t-1}]``.
- The backward LSTM reads the padding at the end of a bAbI batch first (as
  theirs does): a story's outputs depend on the bucket it is padded to.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import haiku as hk
import jax
import jax.numpy as jnp

from dnc_jax import DNC, DNCConfig, unroll
from dnc_jax.controllers import LayerNormLSTM, make_controller


def _lstm(config: DNCConfig, name: str) -> hk.RNNCore:
  """One LSTM of ``hidden_size`` units, layer-normalised as the config says."""
  cls = LayerNormLSTM if config.controller_layer_norm else hk.LSTM
  return cls(config.hidden_size, name=name)


def backward_states(inputs: jax.Array, config: DNCConfig,
                    name: str = "backward_lstm") -> jax.Array:
  """The backward LSTM's outputs ``[T, B, hidden_size]`` over ``[T, B, X]``.

  Step ``t``'s output is the LSTM's after reading ``x_{T-1}, ..., x_t``
  (zero initial state), so it depends on inputs ``t..T-1`` only. Call
  inside ``hk.transform``.
  """
  core = _lstm(config, name)
  reversed_outputs, _ = hk.dynamic_unroll(
      core, jnp.flip(inputs, axis=0),
      jax.tree.map(lambda x: x.astype(inputs.dtype),
                   core.initial_state(inputs.shape[1])))
  return jnp.flip(reversed_outputs, axis=0)


class ForwardController(hk.RNNCore):
  """The BrsDNC's forward controller: ``[x_t; b_t; r_{t-1}] -> [h_t; b_t]``.

  The DNC hands its controller ``[inputs, previous read words]``; here its
  inputs are ``[x_t; b_t]`` (``input_size`` then ``backward_size``
  features). The forward controller (``make_controller(config)``: an LSTM
  of ``hidden_size`` units for bAbI) reads ``[x_t; r_{t-1}]``; its output
  ``h_t [B, D]`` and ``b_t [B, backward_size]`` go on together, so the
  memory interface and the output bypass see both. The state is the inner
  controller's.
  """

  def __init__(self, config: DNCConfig, input_size: int, backward_size: int,
               name: Optional[str] = None):
    super().__init__(name=name)
    self._input_size = input_size
    self._backward_size = backward_size
    self._core = make_controller(config)

  def __call__(self, inputs: jax.Array, prev_state):
    x = inputs[..., :self._input_size]
    split = self._input_size + self._backward_size
    backward = inputs[..., self._input_size:split]
    prev_read = inputs[..., split:]
    hidden, state = self._core(jnp.concatenate([x, prev_read], axis=-1),
                               prev_state)
    return jnp.concatenate([hidden, backward], axis=-1), state

  def initial_state(self, batch_size: Optional[int]):
    return self._core.initial_state(batch_size)


class BrsDNC(hk.Module):
  """The bidirectional DNC over a whole sequence (not an ``hk.RNNCore``).

  ``BrsDNC(config)(inputs [T, B, X], is_training=False) -> outputs [T, B,
  output_size]``. ``config`` is the forward DNC's :class:`~dnc_jax.DNCConfig`
  (``input_size``, when given, is ``X``); the backward LSTM takes
  ``hidden_size`` and ``controller_layer_norm`` from it. ``is_training``
  turns on ``config.bypass_dropout`` (then ``apply`` needs an rng), as for
  :class:`~dnc_jax.DNC`. ``remat_chunk`` rematerialises the forward DNC's
  unroll (:func:`dnc_jax.unroll`); the backward LSTM is unrolled plainly.

  Parameters: ``brsdnc/backward_lstm/...``,
  ``brsdnc/forward_controller/~/lstm/...`` and ``brsdnc/dnc/...`` (the
  memory interface and the output layer).
  """

  def __init__(self, config: DNCConfig, name: Optional[str] = "brsdnc"):
    super().__init__(name=name)
    if not isinstance(config, DNCConfig):
      raise TypeError(f"config must be a DNCConfig, got {type(config)!r}")
    self._config = config

  def __call__(self, inputs: jax.Array, is_training: bool = False,
               remat_chunk: Optional[int] = None) -> jax.Array:
    config = self._config
    if inputs.ndim != 3:
      raise ValueError("BrsDNC inputs must have shape [time, batch, "
                       f"features]; got shape {inputs.shape}")
    features = inputs.shape[-1]
    if config.input_size is not None and features != config.input_size:
      raise ValueError(f"BrsDNC inputs have {features} features but "
                       f"config.input_size = {config.input_size}")
    backward = backward_states(inputs, config)
    forward_config = dataclasses.replace(
        config, input_size=features + config.hidden_size)
    core = DNC(forward_config, name="dnc", is_training=is_training,
               controller=ForwardController(
                   config, features, config.hidden_size,
                   name="forward_controller"))
    outputs, _ = unroll(core, jnp.concatenate([inputs, backward], axis=-1),
                        core.initial_state(inputs.shape[1], inputs.dtype),
                        remat_chunk=remat_chunk)
    return outputs
