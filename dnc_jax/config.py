"""The DNC's configuration: one frozen, validated dataclass."""

from __future__ import annotations

import dataclasses
import operator
from typing import Optional, Tuple

import numpy as np

CONTROLLERS = ("lstm", "deep_lstm", "feedforward")
STRENGTH_SQUASHES = ("oneplus", "softplus")
LINK_STORAGES = ("dense", "indexed")
MEMORY_BACKENDS = ("auto", "xla", "fused", "pallas")
# Options of the memory step (Csordás & Schmidhuber, 2019); docs/maths.md §8.
MEMORY_OPTIONS = ("content_masking", "deallocation", "link_sharpness")
# Csordás & Schmidhuber's variants as DNCConfig fields: DNC-MD (masking and
# de-allocation, their best on bAbI) and DNC-MSD (all three).
DNC_MD = {"content_masking": True, "deallocation": True}
DNC_MSD = {"content_masking": True, "deallocation": True,
           "link_sharpness": True}


def _require_int(name: str, value, low: int, high: Optional[int] = None):
  if isinstance(value, bool) or not isinstance(value, int):
    raise ValueError(f"{name} must be an int, got {value!r}")
  if value < low or (high is not None and value > high):
    allowed = f">= {low}" if high is None else f"in [{low}, {high}]"
    raise ValueError(f"{name} must be {allowed}, got {value}")


def batch_shape(batch_size, name: str = "batch_size") -> Tuple[int, ...]:
  """``()`` for ``None`` (unbatched), ``(batch_size,)`` for an int >= 1.

  Any integer-like value (``numpy`` integers) is accepted; ``bool``,
  floats, strings and values below 1 raise ``ValueError`` naming ``name``.
  """
  if batch_size is None:
    return ()
  message = f"{name} must be an int >= 1 (or None: unbatched), got "
  if isinstance(batch_size, (bool, np.bool_)):
    raise ValueError(message + repr(batch_size))
  try:
    size = operator.index(batch_size)
  except TypeError:
    raise ValueError(message + repr(batch_size)) from None
  if size < 1:
    raise ValueError(message + repr(size))
  return (size,)


def _require_choice(name: str, value, choices):
  if value not in choices:
    raise ValueError(f"{name} must be one of {choices}, got {value!r}")


@dataclasses.dataclass(frozen=True)
class DNCConfig:
  """Hyper-parameters of a :class:`~dnc_jax.DNC`.

  Every field is checked on construction; a bad value raises ``ValueError``
  naming the field and the allowed range.

  Attributes:
    output_size: width of the DNC's output ``y_t``.
    memory_size: ``N``, number of memory slots.
    word_size: ``W``, width of each slot.
    num_reads: ``R``, number of read heads.
    num_writes: ``H``, number of write heads (the paper has 1).
    controller: ``"lstm"``, ``"deep_lstm"`` (stacked LSTMs with skip
      connections) or ``"feedforward"`` (stateless MLP).
    hidden_size: units per controller layer.
    num_layers: controller layers (``deep_lstm`` and ``feedforward``).
    clip_value: clip the controller output and state and the final output to
      ``±clip_value``; 0 turns clipping off (the original release uses 20).
    strength_squash: ``"oneplus"`` (the paper, strengths >= 1) or
      ``"softplus"`` (the original release, strengths > 0).
    link_sparsity: ``None`` for the dense temporal link, or ``K`` for the
      sparse link of ``docs/maths.md`` §4 (top-K write/precedence, 1/K
      threshold).
    link_storage: how a sparse link is held: ``"indexed"`` keeps ``K``
      (column, value) pairs per row, ``O(N·K)`` memory; ``"dense"`` keeps the
      truncated ``N×N`` matrix. Ignored when ``link_sparsity`` is ``None``.
    use_temporal_links: ``False`` drops the link matrix; reads are then by
      content only and the interface has no read modes.
    input_size: when given, inputs are checked to have this width.
    controller_grad_clip: when given, the gradient flowing into the
      controller's activations is clipped element-wise to ``±value`` (the
      paper's bAbI setting uses 10).
    memory_backend: how the memory step runs (see
      :func:`~dnc_jax.memory_step`): ``"auto"`` (the fused CPU kernel where
      it applies, XLA elsewhere), ``"xla"``, ``"fused"`` or ``"pallas"``
      (XLA, with the dense link's step as the Pallas kernels of
      :mod:`dnc_jax.pallas_link`; see :mod:`dnc_jax.backend`).
    content_masking: Csordás & Schmidhuber (2019): every read and write
      head also emits a mask ``m ∈ [0, 1]^W`` and compares its key with the
      memory only where the mask is open, ``C(M ∘ 1mᵀ, k ∘ m, β)``
      (``docs/maths.md`` §8.1).
    deallocation: Csordás & Schmidhuber (2019): the retention ``ψ`` of the
      free gates also scales the memory before the write, so freed slots
      are emptied (§8.2).
    link_sharpness: Csordás & Schmidhuber (2019): each read head sharpens
      its forward and backward weightings, ``S(d, s) ∝ dˢ`` with ``s >= 1``
      emitted per head (§8.3). Needs temporal links, dense or
      ``link_storage="dense"``.
    controller_layer_norm: Franke et al. (2018): layer normalisation of the
      LSTM controller's gate pre-activations and of the cell before its
      ``tanh`` (§8.4); ``"lstm"`` and ``"deep_lstm"`` only.
    interface_layer_norm: Franke et al. (2018, "DNC normalisation"): layer
      normalisation of the raw interface vector before it is split and
      squashed (§8.6).
    bypass_dropout: Franke et al. (2018): dropout rate in ``[0, 1)`` on the
      controller output's path to the output layer, when the DNC is built
      with ``is_training=True`` (§8.5); 0 turns it off.

  Every option is off by default; the defaults compute exactly what they
  did before the options existed. The options of Csordás & Schmidhuber run
  on the XLA path of the memory step only (the fused kernel has none of
  them): ``memory_backend="fused"`` refuses them.
  """

  output_size: int
  memory_size: int = 16
  word_size: int = 16
  num_reads: int = 4
  num_writes: int = 1
  controller: str = "lstm"
  hidden_size: int = 64
  num_layers: int = 1
  clip_value: float = 20.0
  strength_squash: str = "oneplus"
  link_sparsity: Optional[int] = None
  link_storage: str = "indexed"
  use_temporal_links: bool = True
  input_size: Optional[int] = None
  controller_grad_clip: Optional[float] = None
  memory_backend: str = "auto"
  content_masking: bool = False
  deallocation: bool = False
  link_sharpness: bool = False
  controller_layer_norm: bool = False
  interface_layer_norm: bool = False
  bypass_dropout: float = 0.0

  def __post_init__(self):
    _require_int("output_size", self.output_size, 1)
    _require_int("memory_size", self.memory_size, 1)
    _require_int("word_size", self.word_size, 1)
    _require_int("num_reads", self.num_reads, 1)
    _require_int("num_writes", self.num_writes, 1)
    _require_choice("controller", self.controller, CONTROLLERS)
    _require_int("hidden_size", self.hidden_size, 1)
    _require_int("num_layers", self.num_layers, 1)
    if not isinstance(self.clip_value, (int, float)) or isinstance(
        self.clip_value, bool) or not self.clip_value >= 0:
      raise ValueError(
          f"clip_value must be a number >= 0 (0 = off), got {self.clip_value!r}")
    _require_choice("strength_squash", self.strength_squash, STRENGTH_SQUASHES)
    if self.link_sparsity is not None:
      _require_int("link_sparsity", self.link_sparsity, 1, self.memory_size)
    _require_choice("link_storage", self.link_storage, LINK_STORAGES)
    if not isinstance(self.use_temporal_links, bool):
      raise ValueError(
          f"use_temporal_links must be a bool, got {self.use_temporal_links!r}")
    if self.input_size is not None:
      _require_int("input_size", self.input_size, 1)
    if self.controller_grad_clip is not None and not (
        isinstance(self.controller_grad_clip, (int, float))
        and self.controller_grad_clip > 0):
      raise ValueError("controller_grad_clip must be None or a number > 0, "
                       f"got {self.controller_grad_clip!r}")
    _require_choice("memory_backend", self.memory_backend, MEMORY_BACKENDS)
    for name in ("content_masking", "deallocation", "link_sharpness",
                 "controller_layer_norm", "interface_layer_norm"):
      if not isinstance(getattr(self, name), bool):
        raise ValueError(f"{name} must be a bool, got "
                         f"{getattr(self, name)!r}")
    if self.link_sharpness:
      if not self.use_temporal_links:
        raise ValueError("link_sharpness needs temporal links "
                         "(use_temporal_links=True)")
      if self.link_sparsity is not None and self.link_storage == "indexed":
        raise ValueError(
            "link_sharpness is not implemented for the indexed sparse link "
            "(link_sparsity set, link_storage='indexed'); use "
            "link_storage='dense' or link_sparsity=None")
    if self.controller_layer_norm and self.controller not in (
        "lstm", "deep_lstm"):
      raise ValueError("controller_layer_norm needs controller 'lstm' or "
                       f"'deep_lstm', got {self.controller!r}")
    if (isinstance(self.bypass_dropout, bool)
        or not isinstance(self.bypass_dropout, (int, float))
        or not 0 <= self.bypass_dropout < 1):
      raise ValueError("bypass_dropout must be a number in [0, 1) (a "
                       f"dropout rate; 0 = off), got {self.bypass_dropout!r}")
    if self.memory_backend == "fused" and self.memory_options:
      raise ValueError(
          f"memory_backend='fused': the fused kernel does not implement "
          f"{', '.join(self.memory_options)}; use 'auto' or 'xla'")

  @property
  def memory_options(self) -> Tuple[str, ...]:
    """The names of the memory options (``docs/maths.md`` §8) that are on."""
    return tuple(name for name in MEMORY_OPTIONS if getattr(self, name))

  @property
  def num_read_modes(self) -> int:
    """Read modes per read head: backward and forward per write head, content."""
    return 1 + 2 * self.num_writes if self.use_temporal_links else 1

  @property
  def sparse_link_indexed(self) -> bool:
    """Whether the link is kept as ``N×K`` (index, value) pairs.

    The link kind itself is :func:`dnc_jax.links.from_config`'s decision.
    """
    from dnc_jax import links  # Cycle: links is built from a config.
    return links.from_config(self).name == "indexed"

  @property
  def interface_size(self) -> int:
    """Width of the interface vector (``W·R + 3W + 5R + 3`` for ``H = 1``).

    ``content_masking`` adds ``R·W + H·W``, ``link_sharpness`` ``2·R·H``.
    """
    r, h, w = self.num_reads, self.num_writes, self.word_size
    size = r * w + r + 3 * h * w + h + r + 2 * h
    if self.use_temporal_links:
      size += r * self.num_read_modes
    if self.content_masking:
      size += r * w + h * w
    if self.link_sharpness:
      size += 2 * r * h
    return size

  def replace(self, **changes) -> "DNCConfig":
    """A copy with ``changes`` applied (and validated)."""
    return dataclasses.replace(self, **changes)

