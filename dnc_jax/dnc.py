"""The DNC core: controller + memory access + output layer, as an hk.RNNCore."""

from __future__ import annotations

from typing import Optional

import haiku as hk
import jax
import jax.numpy as jnp

from dnc_jax.access import MemoryAccess
from dnc_jax.config import DNCConfig
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

  Inputs are ``[B, X]`` (time-major ``[T, B, X]`` for ``hk.dynamic_unroll``);
  outputs ``[B, output_size]``. With ``return_interface=True`` the output is
  ``(output, MemoryInterface)`` so gates and modes can be recorded.
  """

  def __init__(self, config: DNCConfig, return_interface: bool = False,
               name: Optional[str] = None):
    super().__init__(name=name)
    if not isinstance(config, DNCConfig):
      raise TypeError(f"config must be a DNCConfig, got {type(config)!r}")
    self._config = config
    self._return_interface = return_interface
    self._controller = make_controller(config)
    self._access = MemoryAccess(config, name="memory_access")

  @property
  def config(self) -> DNCConfig:
    return self._config

  def initial_state(self, batch_size: Optional[int],
                    dtype=jnp.float32) -> DNCState:
    """The all-zero state for ``batch_size`` examples, every leaf ``dtype``."""
    if batch_size is None or not isinstance(batch_size, int) or batch_size < 1:
      raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    config = self._config
    return DNCState(
        access_state=self._access.initial_state(batch_size, dtype),
        controller_state=jax.tree.map(
            lambda x: x.astype(dtype),
            self._controller.initial_state(batch_size)),
        read_words=jnp.zeros(
            (batch_size, config.num_reads, config.word_size), dtype))

  def _clip(self, x: jax.Array) -> jax.Array:
    value = self._config.clip_value
    return jnp.clip(x, -value, value) if value > 0 else x

  def _check_inputs(self, inputs: jax.Array, prev_state: DNCState):
    if inputs.ndim != 2:
      raise ValueError("DNC inputs must have shape [batch, features] (use "
                       "hk.dynamic_unroll for [time, batch, features]); got "
                       f"shape {inputs.shape}")
    expected = self._config.input_size
    if expected is not None and inputs.shape[-1] != expected:
      raise ValueError(f"DNC inputs have {inputs.shape[-1]} features but "
                       f"config.input_size = {expected}")
    state_batch = prev_state.read_words.shape[0]
    if inputs.shape[0] != state_batch:
      raise ValueError(f"inputs have batch size {inputs.shape[0]} but the "
                       f"state was built for batch size {state_batch}")

  def __call__(self, inputs: jax.Array, prev_state: DNCState):
    self._check_inputs(inputs, prev_state)
    batch = inputs.shape[0]
    prev_read = prev_state.read_words.reshape(batch, -1)
    controller_input = jnp.concatenate([inputs, prev_read], axis=-1)
    controller_output, controller_state = self._controller(
        controller_input, prev_state.controller_state)
    controller_output = self._clip(controller_output)
    controller_state = jax.tree.map(self._clip, controller_state)
    if self._config.controller_grad_clip is not None:
      controller_output = clip_gradient(controller_output,
                                        float(self._config.controller_grad_clip))
    read_words, access_state, interface = self._access(
        controller_output, prev_state.access_state)
    output = hk.Linear(self._config.output_size, name="output_linear")(
        jnp.concatenate([controller_output, read_words.reshape(batch, -1)],
                        axis=-1))
    output = self._clip(output)
    state = DNCState(access_state=access_state,
                     controller_state=controller_state, read_words=read_words)
    if self._return_interface:
      return (output, interface), state
    return output, state
