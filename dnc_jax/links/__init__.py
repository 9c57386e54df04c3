"""The temporal link, one module per kind, chosen in one place.

Kinds (``docs/maths.md`` §3-4):

* :mod:`~dnc_jax.links.none`: no link (``use_temporal_links=False``).
* :mod:`~dnc_jax.links.dense`: the exact ``[B, H, N, N]`` link.
* :mod:`~dnc_jax.links.truncated`: the sparse top-``K`` link stored dense.
* :mod:`~dnc_jax.links.indexed`: the sparse link as ``[B, H, N, K]``
  (column, value) pairs.

Each module has the same interface: ``NAME``; ``FUSED`` (whether the fused
memory-step kernel computes this link itself); ``initial_state(batch_shape,
num_writes, memory_size, k, dtype)``; ``check_state(where, linkage, sizes,
k)``; ``step(linkage, write_weights, prev_read_weights, content,
read_modes, memory, *, k, backend) -> (linkage, read_weights,
read_words)``; ``dense_view(linkage)``. :func:`from_config` is the one
function that maps a configuration to a kind; :func:`from_state` recovers
the kind of a state for the pure :func:`dnc_jax.memory_step`.
"""

from __future__ import annotations

import types as _types
from typing import NamedTuple, Optional, Tuple

import jax
import numpy as np

from dnc_jax.links import dense, indexed, none, truncated
from dnc_jax.types import SparseTemporalLinkageState, TemporalLinkageState

KINDS = {m.NAME: m for m in (none, dense, truncated, indexed)}


class Link(NamedTuple):
  """A link kind with its sparsity ``k`` (``None`` for none and dense)."""

  kind: _types.ModuleType
  k: Optional[int] = None

  @property
  def name(self) -> str:
    return self.kind.NAME

  @property
  def fused(self) -> bool:
    """Whether the fused memory-step kernel computes this link itself."""
    return self.kind.FUSED

  def initial_state(self, batch_shape: Tuple[int, ...], num_writes: int,
                    memory_size: int, dtype):
    return self.kind.initial_state(batch_shape, num_writes, memory_size,
                                   self.k, dtype)

  def check_state(self, where: str, linkage, sizes=None):
    self.kind.check_state(where, linkage, sizes, self.k)

  def step(self, linkage, write_weights, prev_read_weights, content,
           read_modes, memory, *, backend: str, sharpness=None):
    return step(self, linkage, write_weights, prev_read_weights, content,
                read_modes, memory, backend=backend, sharpness=sharpness)


def from_config(config) -> Link:
  """The link kind a :class:`~dnc_jax.DNCConfig` asks for."""
  if not config.use_temporal_links:
    return Link(none)
  if config.link_sparsity is None:
    return Link(dense)
  if config.link_storage == "indexed":
    return Link(indexed, config.link_sparsity)
  return Link(truncated, config.link_sparsity)


def check_sparsity(link_sparsity) -> Optional[int]:
  """``link_sparsity`` as an int >= 1 (or ``None``), else ``ValueError``."""
  if link_sparsity is None:
    return None
  if (isinstance(link_sparsity, (bool, np.bool_))
      or not isinstance(link_sparsity, (int, np.integer))
      or link_sparsity < 1):
    raise ValueError("link_sparsity must be None or an int >= 1, got "
                     f"{link_sparsity!r}")
  return int(link_sparsity)


def from_state(linkage, link_sparsity: Optional[int] = None) -> Link:
  """The kind of a state's ``linkage``; ``link_sparsity`` picks truncated.

  Raises:
    ValueError: for a bad ``link_sparsity`` or an unknown linkage.
  """
  k = check_sparsity(link_sparsity)
  if linkage is None:
    return Link(none, k)  # check_state refuses a k here.
  if isinstance(linkage, SparseTemporalLinkageState):
    return Link(indexed, k)
  if isinstance(linkage, TemporalLinkageState):
    return Link(dense) if k is None else Link(truncated, k)
  raise ValueError("the state's linkage must be None, a TemporalLinkageState "
                   f"or a SparseTemporalLinkageState, got {type(linkage)!r}")


def step(link: Link, linkage, write_weights: jax.Array,
         prev_read_weights: jax.Array, content: jax.Array,
         read_modes: Optional[jax.Array], memory: jax.Array, *,
         backend: str, sharpness: Optional[jax.Array] = None):
  """Steps 7-10 of ``docs/maths.md`` §3 for ``link``'s kind.

  Args:
    link: the kind.
    linkage: its previous state.
    write_weights: ``[B, H, N]`` this step's write weights.
    prev_read_weights: ``[B, R, N]`` the previous step's read weights.
    content: ``[B, R, N]`` this step's content read weights.
    read_modes: ``[B, R, 1 + 2H]`` (``None`` without links).
    memory: ``[B, N, W]`` after this step's write.
    backend: ``"auto"``, ``"xla"``, ``"fused"`` or ``"pallas"``
      (:mod:`dnc_jax.backend`; only the dense kind has a Pallas step, the
      others take their XLA path under ``"pallas"``).
    sharpness: ``None``, or ``[B, R, 2H]`` exponents that sharpen the
      forward and backward weightings (``docs/maths.md`` §8.3); the dense
      and truncated kinds only.
  Returns:
    ``(next_linkage, read_weights [B, R, N], read_words [B, R, W])``.
  Raises:
    ValueError: for ``sharpness`` with the ``none`` or ``indexed`` kind.
  """
  if sharpness is not None and link.name not in ("dense", "truncated"):
    raise ValueError(f"link_sharpness is not implemented for the "
                     f"{link.name!r} link kind (only 'dense' and 'truncated')")
  if sharpness is None:
    return link.kind.step(linkage, write_weights, prev_read_weights, content,
                          read_modes, memory, k=link.k, backend=backend)
  return link.kind.step(linkage, write_weights, prev_read_weights, content,
                        read_modes, memory, k=link.k, backend=backend,
                        sharpness=sharpness)


def dense_view(linkage) -> Optional[jax.Array]:
  """The ``[..., H, N, N]`` link matrices of any kind (``None``: no links).

  For pictures and tests; the indexed kind is expanded.
  """
  return from_state(linkage).kind.dense_view(linkage)
