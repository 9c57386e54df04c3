"""State and interface containers of the DNC.

Every container is a ``NamedTuple`` of arrays, so ``jax.jit``, ``jax.vmap``,
``jax.lax.scan``, ``hk.dynamic_unroll``, ``pmap`` and sharding treat it as an
ordinary pytree. Shapes use ``B`` batch, ``N`` memory slots, ``W`` word size,
``R`` read heads, ``H`` write heads and ``K`` link sparsity.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Optional, Union

import jax


class TemporalLinkageState(NamedTuple):
  """Dense temporal link matrix and precedence weights, one per write head.

  Attributes:
    link: ``[B, H, N, N]``; ``link[b, h, i, j]`` is the degree to which slot
      ``i`` was written right after slot ``j`` by write head ``h``.
    precedence_weights: ``[B, H, N]``; how much each slot was the last one
      written by head ``h``.
  """

  link: jax.Array
  precedence_weights: jax.Array


class SparseTemporalLinkageState(NamedTuple):
  """Temporal links kept as ``K`` (column, value) pairs per row.

  The sparse link of ``docs/maths.md`` §4 has at most ``K`` non-zeros per
  row, so it is stored in ``O(N·K)``: row ``i`` of head ``h`` holds
  ``link_values[.., i, :]`` at columns ``link_indices[.., i, :]``. Unused
  pairs have value 0.

  Attributes:
    link_indices: ``[B, H, N, K]`` int32 column indices.
    link_values: ``[B, H, N, K]`` link strengths (0 where unused).
    precedence_weights: ``[B, H, N]``.
  """

  link_indices: jax.Array
  link_values: jax.Array
  precedence_weights: jax.Array


Linkage = Union[TemporalLinkageState, SparseTemporalLinkageState]


class AccessState(NamedTuple):
  """Everything the memory carries from one step to the next.

  Attributes:
    memory: ``[B, N, W]`` the memory matrix.
    read_weights: ``[B, R, N]`` read weightings of the last step.
    write_weights: ``[B, H, N]`` write weightings of the last step.
    linkage: temporal link state, or ``None`` when links are disabled.
    usage: ``[B, N]`` usage of each slot, in ``[0, 1]``.
  """

  memory: jax.Array
  read_weights: jax.Array
  write_weights: jax.Array
  linkage: Optional[Linkage]
  usage: jax.Array


class MemoryInterface(NamedTuple):
  """The interface vector, parsed and squashed (``docs/maths.md`` §2).

  Attributes:
    read_keys: ``[B, R, W]``.
    read_strengths: ``[B, R]``, positive (already squashed).
    write_keys: ``[B, H, W]``.
    write_strengths: ``[B, H]``, positive (already squashed).
    erase_vectors: ``[B, H, W]`` in ``[0, 1]``.
    write_vectors: ``[B, H, W]``.
    free_gates: ``[B, R]`` in ``[0, 1]``.
    allocation_gates: ``[B, H]`` in ``[0, 1]``.
    write_gates: ``[B, H]`` in ``[0, 1]``.
    read_modes: ``[B, R, 1 + 2H]`` rows summing to 1, laid out as
      ``[backward for each write head, content, forward for each write head]``;
      ``None`` when temporal links are disabled (reads are by content only).
    read_masks: ``[B, R, W]`` in ``[0, 1]``, the content-lookup masks of the
      read heads (``docs/maths.md`` §8); ``None`` unless
      ``DNCConfig.content_masking``.
    write_masks: ``[B, H, W]`` in ``[0, 1]``, those of the write heads;
      ``None`` unless ``content_masking``.
    link_sharpness: ``[B, R, 2H]`` exponents ``>= 1`` of the directional
      weightings, laid out ``[backward × H, forward × H]`` (§8); ``None``
      unless ``DNCConfig.link_sharpness``.
  """

  read_keys: jax.Array
  read_strengths: jax.Array
  write_keys: jax.Array
  write_strengths: jax.Array
  erase_vectors: jax.Array
  write_vectors: jax.Array
  free_gates: jax.Array
  allocation_gates: jax.Array
  write_gates: jax.Array
  read_modes: Optional[jax.Array]
  read_masks: Optional[jax.Array] = None
  write_masks: Optional[jax.Array] = None
  link_sharpness: Optional[jax.Array] = None


class DNCState(NamedTuple):
  """State of the :class:`~dnc_jax.DNC` core.

  Attributes:
    access_state: the memory's :class:`AccessState`.
    controller_state: the controller's state (``hk.LSTMState``, a tuple of
      them for the deep LSTM, ``()`` for the feed-forward controller).
    read_words: ``[B, R, W]`` the read vectors of the last step, fed to the
      controller at the next one.
  """

  access_state: AccessState
  controller_state: Any
  read_words: jax.Array


# The MemoryInterface fields of the optional addressing of docs/maths.md §8;
# ``None`` unless their option is on. The fused kernel takes none of them.
INTERFACE_OPTION_FIELDS = ("read_masks", "write_masks", "link_sharpness")
