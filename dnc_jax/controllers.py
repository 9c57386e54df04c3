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


def make_controller(config: DNCConfig) -> hk.RNNCore:
  """The controller ``config.controller`` names.

  ``"lstm"``: one ``hk.LSTM(hidden_size)``. ``"deep_lstm"``: ``num_layers``
  LSTMs with skip connections (each layer sees the input; the output
  concatenates every layer's). ``"feedforward"``: ``num_layers`` tanh layers.
  """
  if config.controller == "lstm":
    return hk.LSTM(config.hidden_size, name="lstm")
  if config.controller == "deep_lstm":
    layers = [hk.LSTM(config.hidden_size, name=f"lstm_{i}")
              for i in range(config.num_layers)]
    return hk.deep_rnn_with_skip_connections(layers, name="deep_lstm")
  return FeedForwardController((config.hidden_size,) * config.num_layers,
                               name="feedforward")
