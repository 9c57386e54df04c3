"""Controllers: the recurrent (or feed-forward) network that drives the memory.

Each is an ``hk.RNNCore``: ``initial_state(batch_size)`` and
``__call__(inputs [B, X], prev_state) -> (output [B, D], next_state)``.
"""

from __future__ import annotations

from typing import Callable, Optional, Tuple

import haiku as hk
import jax
import jax.numpy as jnp

from dnc_jax.config import DNCConfig


class FeedForwardController(hk.RNNCore):
  """A stateless MLP posing as an RNN core; its state is ``()``.

  With it, anything the DNC remembers must live in the external memory (the
  setting of the paper's copy experiments).
  """

  def __init__(self, hidden_sizes: Tuple[int, ...],
               activation: Callable[[jax.Array], jax.Array] = jnp.tanh,
               name: Optional[str] = None):
    super().__init__(name=name)
    self._hidden_sizes = tuple(hidden_sizes)
    self._activation = activation

  def __call__(self, inputs: jax.Array, prev_state: tuple):
    x = inputs
    for i, size in enumerate(self._hidden_sizes):
      x = self._activation(hk.Linear(size, name=f"linear_{i}")(x))
    return x, prev_state

  def initial_state(self, batch_size: Optional[int]) -> tuple:
    del batch_size
    return ()


class LayerNormLSTM(hk.RNNCore):
  """An LSTM with layer normalisation (Franke et al., 2018; §8.4).

  With ``z = LN_g(W [x_t; h_{t-1}])`` (one normalisation over all ``4D``
  pre-activations; its learnt offset is the gates' bias) split as
  ``hk.LSTM`` does into ``i, g, f, o``:
  ``c_t = σ(f + 1) ∘ c_{t-1} + σ(i) ∘ tanh(g)`` and
  ``h_t = σ(o) ∘ tanh(LN_c(c_t))``; the carried cell is not normalised.
  The state is an ``hk.LSTMState``, as ``hk.LSTM``'s.
  """

  def __init__(self, hidden_size: int, name: Optional[str] = None):
    super().__init__(name=name)
    self.hidden_size = hidden_size

  def __call__(self, inputs: jax.Array, prev_state: hk.LSTMState):
    x_and_h = jnp.concatenate([inputs, prev_state.hidden], axis=-1)
    gated = hk.Linear(4 * self.hidden_size, with_bias=False,
                      name="linear")(x_and_h)
    gated = hk.LayerNorm(axis=-1, create_scale=True, create_offset=True,
                         name="gates_layer_norm")(gated)
    i, g, f, o = jnp.split(gated, indices_or_sections=4, axis=-1)
    f = jax.nn.sigmoid(f + 1)  # Forget bias of 1, as hk.LSTM.
    cell = f * prev_state.cell + jax.nn.sigmoid(i) * jnp.tanh(g)
    normed = hk.LayerNorm(axis=-1, create_scale=True, create_offset=True,
                          name="cell_layer_norm")(cell)
    hidden = jax.nn.sigmoid(o) * jnp.tanh(normed)
    return hidden, hk.LSTMState(hidden=hidden, cell=cell)

  def initial_state(self, batch_size: Optional[int]) -> hk.LSTMState:
    shape = ((self.hidden_size,) if batch_size is None
             else (batch_size, self.hidden_size))
    return hk.LSTMState(hidden=jnp.zeros(shape), cell=jnp.zeros(shape))


def make_controller(config: DNCConfig) -> hk.RNNCore:
  """The controller ``config.controller`` names.

  ``"lstm"``: one ``hk.LSTM(hidden_size)``. ``"deep_lstm"``: ``num_layers``
  LSTMs with skip connections (each layer sees the input; the output
  concatenates every layer's). ``"feedforward"``: ``num_layers`` tanh layers.
  With ``controller_layer_norm`` each LSTM is a :class:`LayerNormLSTM`,
  under the same module names.
  """
  lstm = LayerNormLSTM if config.controller_layer_norm else hk.LSTM
  if config.controller == "lstm":
    return lstm(config.hidden_size, name="lstm")
  if config.controller == "deep_lstm":
    layers = [lstm(config.hidden_size, name=f"lstm_{i}")
              for i in range(config.num_layers)]
    return hk.deep_rnn_with_skip_connections(layers, name="deep_lstm")
  return FeedForwardController((config.hidden_size,) * config.num_layers,
                               name="feedforward")
