"""The Neural Turing Machine (Graves, Wayne & Danihelka 2014) as an hk.RNNCore.

The baseline of the DNC paper's Extended Data Table 1. It shares the DNC's
content addressing (:func:`dnc_jax.addressing.content_weights`) and its
erase/add write; it has no allocation, no freeing and no temporal links.
Instead each head can move its previous weighting by a circular shift.

Per head, each step (``docs/ntm.md`` has the derivation and the choices):

  content        w^c = softmax_i(β · cos(k, M[i]))             β = oneplus(β̂)
  interpolation  w^g = g w^c + (1 − g) w_{t-1}                 g = σ(ĝ)
  shift          w̃[i] = Σ_{s=-S..S} σ_s w^g[(i − s) mod N]    σ = softmax(ŝ)
  sharpening     w[i] = (w̃[i] + ε)^γ / Σ_j (w̃[j] + ε)^γ      γ = oneplus(γ̂)

The write heads address ``M_{t-1}`` and write
``M_t = M_{t-1} ∘ Π_h (1 − w^h e^hᵀ) + Σ_h w^h a^hᵀ``; the read heads then
address and read ``M_t`` (as in the DNC, a word written at step ``t`` can be
read at step ``t``).

Shapes: ``B`` batch, ``N`` slots, ``W`` word size, ``R`` read heads, ``Hw``
write heads, ``K`` heads in general, ``S`` the shift range
(``2S + 1`` allowed shifts).
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple, Optional

import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np

from dnc_jax import addressing
from dnc_jax.addressing import content_weights
from dnc_jax.controllers import FeedForwardController
from dnc_jax.dnc import clip_gradient

NTM_CONTROLLERS = ("lstm", "feedforward")
INITIAL_WEIGHTINGS = ("one_hot", "zeros")
# Added to the shifted weighting before sharpening: keeps the power and its
# logarithm finite (an all-zero weighting sharpens to uniform, not 0/0) while
# staying below float32's resolution for weights near 1.
SHARPEN_EPSILON = 1e-8


def _require_int(name: str, value, low: int):
  if isinstance(value, bool) or not isinstance(value, int):
    raise ValueError(f"{name} must be an int, got {value!r}")
  if value < low:
    raise ValueError(f"{name} must be >= {low}, got {value}")


def _require_choice(name: str, value, choices):
  if value not in choices:
    raise ValueError(f"{name} must be one of {choices}, got {value!r}")


@dataclasses.dataclass(frozen=True)
class NTMConfig:
  """Hyper-parameters of an :class:`NTM`; every field checked on construction.

  A bad value raises ``ValueError`` naming the field and the allowed values.

  Attributes:
    output_size: width of the output ``y_t``.
    memory_size: ``N``, number of memory slots.
    word_size: ``W``, width of each slot.
    num_reads: ``R``, number of read heads.
    num_writes: ``Hw``, number of write heads.
    controller: ``"lstm"`` (one ``hk.LSTM``) or ``"feedforward"`` (one tanh
      layer; the memory is then the only state).
    hidden_size: controller units.
    shift_range: ``S``; the allowed shifts are ``-S, ..., +S`` (``S = 1``:
      the paper's ``{-1, 0, +1}``). ``0`` turns location shifts off.
      ``2S + 1 <= memory_size`` so that no two shifts coincide.
    clip_value: clip the controller output and state and the final output to
      ``±clip_value``; 0 turns clipping off.
    initial_weighting: the read and write weightings at ``t = 0``:
      ``"one_hot"`` (all on slot 0) or ``"zeros"``. With ``"zeros"`` and the
      zero initial memory every slot stays identical and every weighting
      uniform forever (``docs/ntm.md``); it is kept only for comparison.
    input_size: when given, inputs are checked to have this width.
    weighting_grad_clip: bound on the gradient flowing back into the
      previous step's read and write weightings (element-wise,
      :func:`dnc_jax.clip_gradient`; the forward pass is unchanged);
      ``None``: off. The weighting recurrence (interpolation, shift,
      sharpening, step after step) can multiply its gradient past float32's
      range over long sequences: a bAbI run (LSTM 256, N 256) reached NaN
      gradients with a finite loss at step 2,651 without it, and the
      gradient of that batch is finite with the recurrence cut
      (``docs/ntm.md``).
  """

  output_size: int
  memory_size: int = 16
  word_size: int = 16
  num_reads: int = 1
  num_writes: int = 1
  controller: str = "lstm"
  hidden_size: int = 64
  shift_range: int = 1
  clip_value: float = 20.0
  initial_weighting: str = "one_hot"
  input_size: Optional[int] = None
  weighting_grad_clip: Optional[float] = None

  def __post_init__(self):
    _require_int("output_size", self.output_size, 1)
    _require_int("memory_size", self.memory_size, 1)
    _require_int("word_size", self.word_size, 1)
    _require_int("num_reads", self.num_reads, 1)
    _require_int("num_writes", self.num_writes, 1)
    _require_choice("controller", self.controller, NTM_CONTROLLERS)
    _require_int("hidden_size", self.hidden_size, 1)
    _require_int("shift_range", self.shift_range, 0)
    if 2 * self.shift_range + 1 > self.memory_size:
      raise ValueError(
          f"shift_range must satisfy 2 * shift_range + 1 <= memory_size "
          f"(= {self.memory_size}), got {self.shift_range}")
    if not isinstance(self.clip_value, (int, float)) or isinstance(
        self.clip_value, bool) or not self.clip_value >= 0:
      raise ValueError(
          "clip_value must be a number >= 0 (0 = off), got "
          f"{self.clip_value!r}")
    _require_choice("initial_weighting", self.initial_weighting,
                    INITIAL_WEIGHTINGS)
    if self.input_size is not None:
      _require_int("input_size", self.input_size, 1)
    clip = self.weighting_grad_clip
    if clip is not None and (isinstance(clip, bool) or not isinstance(
        clip, (int, float)) or not clip > 0):
      raise ValueError("weighting_grad_clip must be None (off) or a number "
                       f"> 0, got {clip!r}")

  @property
  def num_shifts(self) -> int:
    """``2S + 1``, the width of each head's shift weighting."""
    return 2 * self.shift_range + 1

  @property
  def num_heads(self) -> int:
    """``R + Hw``; read heads come first in every per-head field."""
    return self.num_reads + self.num_writes

  @property
  def interface_size(self) -> int:
    """``(R + Hw)(W + 3 + 2S + 1) + 2 Hw W`` (:func:`parse_ntm_interface`)."""
    return (self.num_heads * (self.word_size + 3 + self.num_shifts)
            + 2 * self.num_writes * self.word_size)

  def replace(self, **changes) -> "NTMConfig":
    """A copy with ``changes`` applied (and validated)."""
    return dataclasses.replace(self, **changes)


class NTMInterface(NamedTuple):
  """Squashed head parameters; ``K = R + Hw`` heads, read heads first.

  Attributes:
    keys: ``[B, K, W]``.
    strengths: ``[B, K]``, ``oneplus`` (>= 1).
    gates: ``[B, K]``, interpolation gates in ``(0, 1)``.
    shifts: ``[B, K, 2S + 1]``, softmax over shifts ``-S..+S``.
    sharpenings: ``[B, K]``, ``oneplus`` (>= 1).
    erase_vectors: ``[B, Hw, W]``, in ``(0, 1)``.
    add_vectors: ``[B, Hw, W]``, unsquashed.
  """
  keys: Any
  strengths: Any
  gates: Any
  shifts: Any
  sharpenings: Any
  erase_vectors: Any
  add_vectors: Any


class NTMState(NamedTuple):
  """The NTM's recurrent state.

  Attributes:
    memory: ``[B, N, W]``.
    read_weights: ``[B, R, N]``.
    write_weights: ``[B, Hw, N]``.
    controller_state: the controller's state (``hk.LSTMState`` or ``()``).
    read_words: ``[B, R, W]``, last step's reads (fed to the controller).
  """
  memory: Any
  read_weights: Any
  write_weights: Any
  controller_state: Any
  read_words: Any


def oneplus(x: jax.Array) -> jax.Array:
  """``1 + softplus(x)``, values >= 1 (the DNC's strength squash)."""
  return 1.0 + jax.nn.softplus(x)


def parse_ntm_interface(vector: jax.Array, config: NTMConfig) -> NTMInterface:
  """Split and squash a raw interface vector.

  Layout (field-major, ``K = R + Hw`` heads, read heads before write heads,
  each block flattened head-major):

  ======================  ============  ===========
  field                   width         squash
  ======================  ============  ===========
  keys                    ``K·W``       none
  strengths β             ``K``         oneplus
  interpolation gates g   ``K``         sigmoid
  shifts                  ``K·(2S+1)``  softmax per head
  sharpenings γ           ``K``         oneplus
  erase vectors e         ``Hw·W``      sigmoid
  add vectors a           ``Hw·W``      none
  ======================  ============  ===========

  Args:
    vector: ``[B, config.interface_size]`` raw values (any leading axes).
    config: gives ``R``, ``Hw``, ``W`` and ``S``.
  Returns:
    The :class:`NTMInterface`.
  """
  if vector.shape[-1] != config.interface_size:
    raise ValueError(
        f"interface vector has width {vector.shape[-1]}, expected "
        f"config.interface_size = {config.interface_size}")
  k, h, w, s = (config.num_heads, config.num_writes, config.word_size,
                config.num_shifts)
  batch = vector.shape[:-1]
  sizes = [k * w, k, k, k * s, k, h * w, h * w]
  parts = jnp.split(vector, np.cumsum(sizes)[:-1].tolist(), axis=-1)
  keys, strengths, gates, shifts, sharpenings, erase, add = parts
  return NTMInterface(
      keys=keys.reshape(*batch, k, w),
      strengths=oneplus(strengths),
      gates=jax.nn.sigmoid(gates),
      shifts=jax.nn.softmax(shifts.reshape(*batch, k, s), axis=-1),
      sharpenings=oneplus(sharpenings),
      erase_vectors=jax.nn.sigmoid(erase.reshape(*batch, h, w)),
      add_vectors=add.reshape(*batch, h, w))


def interpolate(content: jax.Array, prev_weights: jax.Array,
                gates: jax.Array) -> jax.Array:
  """``w^g = g w^c + (1 − g) w_{t-1}``.

  Args:
    content: ``[B, K, N]``.
    prev_weights: ``[B, K, N]``.
    gates: ``[B, K]``.
  Returns:
    ``[B, K, N]``.
  """
  gates = gates[..., None]
  return gates * content + (1.0 - gates) * prev_weights


def circular_shift(weights: jax.Array, shifts: jax.Array) -> jax.Array:
  """``w̃[i] = Σ_{s=-S..S} σ_s w[(i − s) mod N]``: shift ``+1`` moves mass up.

  A one-hot weighting on slot ``i`` with all shift mass on ``+1`` becomes
  one-hot on slot ``(i + 1) mod N``.

  Args:
    weights: ``[B, K, N]``.
    shifts: ``[B, K, 2S + 1]``, entry ``j`` the weight of shift ``j − S``.
  Returns:
    ``[B, K, N]``.
  """
  shift_range = (shifts.shape[-1] - 1) // 2
  out = jnp.zeros_like(weights)
  for j in range(shifts.shape[-1]):
    out = out + shifts[..., j, None] * jnp.roll(weights, j - shift_range,
                                                axis=-1)
  return out


def sharpen(weights: jax.Array, sharpenings: jax.Array,
            epsilon: float = SHARPEN_EPSILON) -> jax.Array:
  """``w[i] = (w̃[i] + ε)^γ / Σ_j (w̃[j] + ε)^γ``, as softmax(γ log(w̃ + ε)).

  The log-space form never overflows or underflows to ``0/0`` for large
  ``γ``; ``ε`` makes an all-zero weighting sharpen to uniform.

  Args:
    weights: ``[B, K, N]``, non-negative.
    sharpenings: ``[B, K]``, ``γ >= 1``.
  Returns:
    ``[B, K, N]``, each row summing to 1.
  """
  return jax.nn.softmax(sharpenings[..., None] * jnp.log(weights + epsilon),
                        axis=-1)


def ntm_addressing(memory: jax.Array, prev_weights: jax.Array,
                   keys: jax.Array, strengths: jax.Array, gates: jax.Array,
                   shifts: jax.Array, sharpenings: jax.Array) -> jax.Array:
  """The NTM addressing of ``K`` heads: content, interpolation, shift, sharpen.

  Args:
    memory: ``[B, N, W]``.
    prev_weights: ``[B, K, N]``.
    keys: ``[B, K, W]``.
    strengths: ``[B, K]``, squashed (positive).
    gates: ``[B, K]``, in ``[0, 1]``.
    shifts: ``[B, K, 2S + 1]``, rows summing to 1.
    sharpenings: ``[B, K]``, ``>= 1``.
  Returns:
    ``[B, K, N]`` weightings, rows summing to 1.
  """
  content = content_weights(memory, keys, strengths)
  gated = interpolate(content, prev_weights, gates)
  return sharpen(circular_shift(gated, shifts), sharpenings)


def erase_and_add(memory: jax.Array, write_weights: jax.Array,
                  erase_vectors: jax.Array,
                  add_vectors: jax.Array) -> jax.Array:
  """``M ∘ Π_h (1 − w^h e^hᵀ) + Σ_h w^h a^hᵀ``: all erases, then all adds.

  With one head this is the paper's ``M̃ = M ∘ (1 − w eᵀ)``, ``M̃ + w aᵀ``.
  With several, the result does not depend on the heads' order.

  Args:
    memory: ``[B, N, W]``.
    write_weights: ``[B, Hw, N]``.
    erase_vectors: ``[B, Hw, W]``.
    add_vectors: ``[B, Hw, W]``.
  Returns:
    ``[B, N, W]``.
  """
  kept = 1.0 - write_weights[..., :, :, None] * erase_vectors[..., :, None, :]
  retained = kept[..., 0, :, :]
  for head in range(1, kept.shape[-3]):
    retained = retained * kept[..., head, :, :]
  added = jnp.einsum("...hn,...hw->...nw", write_weights, add_vectors)
  return memory * retained + added


# ``r^i = Σ_n w^i[n] M[n]``: ``[B, R, N]`` weights, ``[B, N, W]`` memory ->
# ``[B, R, W]``; reading is the same operation as the DNC's.
read_memory = addressing.read_words


def ntm_memory_step(interface: NTMInterface, state: NTMState) -> NTMState:
  """One memory step: address and write with the write heads, then read.

  Write heads address ``M_{t-1}`` with their previous weightings; the memory
  is erased and added to; read heads then address ``M_t`` and read it.

  Args:
    interface: squashed parameters (:func:`parse_ntm_interface`), read heads
      first in the per-head fields.
    state: the previous state; its ``controller_state`` is passed through.
  Returns:
    The new :class:`NTMState` (``memory``, both weightings and
    ``read_words [B, R, W]`` updated).
  """
  num_reads = state.read_weights.shape[-2]
  reads, writes = slice(None, num_reads), slice(num_reads, None)

  def address(memory, prev_weights, heads):
    return ntm_addressing(
        memory, prev_weights, interface.keys[..., heads, :],
        interface.strengths[..., heads], interface.gates[..., heads],
        interface.shifts[..., heads, :], interface.sharpenings[..., heads])

  write_weights = address(state.memory, state.write_weights, writes)
  memory = erase_and_add(state.memory, write_weights, interface.erase_vectors,
                         interface.add_vectors)
  read_weights = address(memory, state.read_weights, reads)
  return state._replace(memory=memory, read_weights=read_weights,
                        write_weights=write_weights,
                        read_words=read_memory(read_weights, memory))


def initial_weights(batch_size: int, num_heads: int, memory_size: int,
                    kind: str = "one_hot", dtype=jnp.float32) -> jax.Array:
  """``[B, K, N]`` weightings at ``t = 0``: one-hot on slot 0, or zeros."""
  _require_choice("initial_weighting", kind, INITIAL_WEIGHTINGS)
  weights = jnp.zeros((batch_size, num_heads, memory_size), dtype)
  return weights.at[..., 0].set(1.0) if kind == "one_hot" else weights


class NTM(hk.RNNCore):
  """Neural Turing Machine (Graves, Wayne & Danihelka 2014).

  Each step: the controller reads ``[inputs, previous read words]``; its
  output (clipped to ``±clip_value``) goes through ``Linear(interface_size)``
  to the interface (:func:`parse_ntm_interface`); the memory is written and
  read (:func:`ntm_memory_step`); the output is
  ``Linear([controller output, read words])``, clipped.

  Inputs are ``[B, X]`` (time-major ``[T, B, X]`` for ``hk.dynamic_unroll``);
  outputs ``[B, output_size]``. With ``return_interface=True`` the output is
  ``(output, NTMInterface)``.
  """

  def __init__(self, config: NTMConfig, return_interface: bool = False,
               name: Optional[str] = None):
    super().__init__(name=name)
    if not isinstance(config, NTMConfig):
      raise TypeError(f"config must be an NTMConfig, got {type(config)!r}")
    self._config = config
    self._return_interface = return_interface
    if config.controller == "lstm":
      self._controller = hk.LSTM(config.hidden_size, name="lstm")
    else:
      self._controller = FeedForwardController((config.hidden_size,),
                                               name="feedforward")

  @property
  def config(self) -> NTMConfig:
    return self._config

  def initial_state(self, batch_size: Optional[int],
                    dtype=jnp.float32) -> NTMState:
    """Zero memory and reads; weightings as ``config.initial_weighting``.

    With zero memory every content weighting is uniform; one-hot initial
    weightings let the heads start from slot 0 by location (``g → 0``).
    """
    if batch_size is None or not isinstance(batch_size, int) or batch_size < 1:
      raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    c = self._config
    return NTMState(
        memory=jnp.zeros((batch_size, c.memory_size, c.word_size), dtype),
        read_weights=initial_weights(batch_size, c.num_reads, c.memory_size,
                                     c.initial_weighting, dtype),
        write_weights=initial_weights(batch_size, c.num_writes, c.memory_size,
                                      c.initial_weighting, dtype),
        controller_state=jax.tree.map(
            lambda x: x.astype(dtype),
            self._controller.initial_state(batch_size)),
        read_words=jnp.zeros((batch_size, c.num_reads, c.word_size), dtype))

  def _clip(self, x: jax.Array) -> jax.Array:
    value = self._config.clip_value
    return jnp.clip(x, -value, value) if value > 0 else x

  def _check_inputs(self, inputs: jax.Array, prev_state: NTMState):
    if inputs.ndim != 2:
      raise ValueError("NTM inputs must have shape [batch, features] (use "
                       "hk.dynamic_unroll for [time, batch, features]); got "
                       f"shape {inputs.shape}")
    expected = self._config.input_size
    if expected is not None and inputs.shape[-1] != expected:
      raise ValueError(f"NTM inputs have {inputs.shape[-1]} features but "
                       f"config.input_size = {expected}")
    state_batch = prev_state.read_words.shape[0]
    if inputs.shape[0] != state_batch:
      raise ValueError(f"inputs have batch size {inputs.shape[0]} but the "
                       f"state was built for batch size {state_batch}")

  def __call__(self, inputs: jax.Array, prev_state: NTMState):
    self._check_inputs(inputs, prev_state)
    batch = inputs.shape[0]
    controller_input = jnp.concatenate(
        [inputs, prev_state.read_words.reshape(batch, -1)], axis=-1)
    controller_output, controller_state = self._controller(
        controller_input, prev_state.controller_state)
    controller_output = self._clip(controller_output)
    controller_state = jax.tree.map(self._clip, controller_state)
    interface = parse_ntm_interface(
        hk.Linear(self._config.interface_size, name="interface_linear")(
            controller_output), self._config)
    prev_state = prev_state._replace(controller_state=controller_state)
    bound = self._config.weighting_grad_clip
    if bound is not None:
      prev_state = prev_state._replace(
          read_weights=clip_gradient(prev_state.read_weights, bound),
          write_weights=clip_gradient(prev_state.write_weights, bound))
    state = ntm_memory_step(interface, prev_state)
    output = hk.Linear(self._config.output_size, name="output_linear")(
        jnp.concatenate([controller_output,
                         state.read_words.reshape(batch, -1)], axis=-1))
    output = self._clip(output)
    if self._return_interface:
      return (output, interface), state
    return output, state
