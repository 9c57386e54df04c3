"""The DNC core: controller + memory access + output layer, as an hk.RNNCore."""

from __future__ import annotations

from typing import Optional

import haiku as hk
import jax
import jax.numpy as jnp

from dnc_jax.access import MemoryAccess
from dnc_jax.config import DNCConfig, batch_shape
from dnc_jax.controllers import make_controller
from dnc_jax.types import DNCState


@jax.custom_vjp
def clip_gradient(x: jax.Array, bound: float) -> jax.Array:
  """Identity whose gradient is clipped element-wise to ``±bound``."""
  del bound
  return x


def _clip_gradient_fwd(x, bound):
  return x, bound


def _clip_gradient_bwd(bound, cotangent):
  return jnp.clip(cotangent, -bound, bound), None


clip_gradient.defvjp(_clip_gradient_fwd, _clip_gradient_bwd)


class DNC(hk.RNNCore):
  """Differentiable Neural Computer (Graves et al., Nature 2016).

  Each step: the controller reads ``[inputs, previous read words]``; its
  output (clipped to ``±clip_value``) parameterises the memory interface; the
  memory is written and read; the output is
  ``Linear([controller output, read words])``, clipped.

  Inputs are ``[B, X]`` (time-major ``[T, B, X]`` for ``hk.dynamic_unroll``;
  ``[X]`` with a state from ``initial_state(None)``); outputs
  ``[B, output_size]``. With ``return_interface=True`` the output is
  ``(output, MemoryInterface)`` so gates and modes can be recorded.

  Args:
    config: the :class:`DNCConfig`.
    return_interface: also return the step's :class:`MemoryInterface`.
    name: the module's name (default ``"dnc"``).
    controller: any ``hk.RNNCore`` (``hk.GRU``, ``hk.DeepRNN``, ...) to use
      instead of the one ``config.controller`` names; it receives
      ``[inputs, previous read words]`` and its output drives the memory.
      ``config.controller``, ``hidden_size`` and ``num_layers`` are then
      unused.
    return_read_words: return ``(controller_output [B, D], read_words
      [B, R, W])`` instead of the output layer's ``[B, output_size]`` (no
      output layer is created), to use the DNC inside a larger model.
    is_training: with ``config.bypass_dropout > 0``, drop units of the
      controller output on its way to the output layer (the returned
      ``controller_output`` with ``return_read_words``), never on its way to
      the memory (``docs/maths.md`` §8.5). Needs an rng
      (``hk.next_rng_key``). ``False`` (the default): no dropout, no rng.
  """

  def __init__(self, config: DNCConfig, return_interface: bool = False,
               name: Optional[str] = None, *,
               controller: Optional[hk.RNNCore] = None,
               return_read_words: bool = False,
               is_training: bool = False):
    super().__init__(name=name)
    if not isinstance(config, DNCConfig):
      raise TypeError(f"config must be a DNCConfig, got {type(config)!r}")
    if controller is not None and not isinstance(controller, hk.RNNCore):
      raise TypeError("controller must be an hk.RNNCore, got "
                      f"{type(controller)!r}")
    self._config = config
    self._return_interface = return_interface
    self._return_read_words = bool(return_read_words)
    if not isinstance(is_training, bool):
      raise TypeError(f"is_training must be a bool, got {is_training!r}")
    self._is_training = is_training
    self._controller = (make_controller(config) if controller is None
                        else controller)
    self._access = MemoryAccess(config, name="memory_access")

  @property
  def config(self) -> DNCConfig:
    return self._config

  def initial_state(self, batch_size: Optional[int],
                    dtype=jnp.float32) -> DNCState:
    """The all-zero state for ``batch_size`` examples, every leaf ``dtype``.

    ``batch_size=None`` gives the unbatched state (no leading batch axis),
    as ``hk.LSTM`` does. Raises ``ValueError`` naming ``batch_size`` unless
    it is ``None`` or an integer >= 1 (NumPy integers included).
    """
    batch = batch_shape(batch_size)
    config = self._config
    return DNCState(
        access_state=self._access.initial_state(
            batch[0] if batch else None, dtype),
        controller_state=jax.tree.map(
            lambda x: x.astype(dtype),
            self._controller.initial_state(batch[0] if batch else None)),
        read_words=jnp.zeros((*batch, config.num_reads, config.word_size),
                             dtype))

  def _clip(self, x: jax.Array) -> jax.Array:
    value = self._config.clip_value
    if value <= 0 or not jnp.issubdtype(x.dtype, jnp.floating):
      return x
    return jnp.clip(x, -value, value)

  def _check_inputs(self, inputs: jax.Array, prev_state: DNCState):
    batched = prev_state.read_words.ndim == 3
    if inputs.ndim != (2 if batched else 1):
      if batched:
        raise ValueError("DNC inputs must have shape [batch, features] (use "
                         "hk.dynamic_unroll for [time, batch, features]); "
                         f"got shape {inputs.shape}")
      raise ValueError("DNC inputs must have shape [features] with an "
                       "unbatched state (initial_state(None)); got shape "
                       f"{inputs.shape}")
    expected = self._config.input_size
    if expected is not None and inputs.shape[-1] != expected:
      raise ValueError(f"DNC inputs have {inputs.shape[-1]} features but "
                       f"config.input_size = {expected}")
    if batched and inputs.shape[0] != prev_state.read_words.shape[0]:
      raise ValueError(f"inputs have batch size {inputs.shape[0]} but the "
                       "state was built for batch size "
                       f"{prev_state.read_words.shape[0]}")

  def __call__(self, inputs: jax.Array, prev_state: DNCState):
    self._check_inputs(inputs, prev_state)
    batch = inputs.shape[:-1]
    prev_read = prev_state.read_words.reshape(*batch, -1)
    controller_input = jnp.concatenate([inputs, prev_read], axis=-1)
    controller_output, controller_state = self._controller(
        controller_input, prev_state.controller_state)
    controller_output = self._clip(controller_output)
    controller_state = jax.tree.map(self._clip, controller_state)
    if self._config.controller_grad_clip is not None:
      controller_output = clip_gradient(
          controller_output, float(self._config.controller_grad_clip))
    read_words, access_state, interface = self._access(
        controller_output, prev_state.access_state)
    state = DNCState(access_state=access_state,
                     controller_state=controller_state, read_words=read_words)
    bypass = controller_output
    if self._is_training and self._config.bypass_dropout > 0:
      bypass = hk.dropout(hk.next_rng_key(), self._config.bypass_dropout,
                          bypass)
    if self._return_read_words:
      output = (bypass, read_words)
    else:
      output = hk.Linear(self._config.output_size, name="output_linear")(
          jnp.concatenate([bypass, read_words.reshape(*batch, -1)], axis=-1))
      output = self._clip(output)
    if self._return_interface:
      return (output, interface), state
    return output, state
