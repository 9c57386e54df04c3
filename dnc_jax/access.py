"""Memory access: the pure memory step and the Haiku module around it."""

from __future__ import annotations

import functools
from typing import Optional, Tuple

import haiku as hk
import jax
import jax.numpy as jnp

from dnc_jax import addressing
from dnc_jax import fused
from dnc_jax import sparse_link
from dnc_jax.config import MEMORY_BACKENDS, DNCConfig
from dnc_jax.interface import parse_interface
from dnc_jax.types import (AccessState, MemoryInterface,
                           SparseTemporalLinkageState, TemporalLinkageState)


def initial_access_state(config: DNCConfig, batch_size: int,
                         dtype=jnp.float32) -> AccessState:
  """The all-zero state of DESIGN 2.3, with the linkage ``config`` asks for.

  Shapes: memory ``[B, N, W]``, read weights ``[B, R, N]``, write weights
  ``[B, H, N]``, usage ``[B, N]``; the linkage is a
  :class:`TemporalLinkageState` (link ``[B, H, N, N]``), a
  :class:`SparseTemporalLinkageState` (``[B, H, N, K]`` pairs) when
  ``config.sparse_link_indexed``, or ``None`` without temporal links.
  """
  b, n, h = batch_size, config.memory_size, config.num_writes
  if not config.use_temporal_links:
    linkage = None
  elif config.sparse_link_indexed:
    k = config.link_sparsity
    linkage = SparseTemporalLinkageState(
        link_indices=jnp.zeros((b, h, n, k), jnp.int32),
        link_values=jnp.zeros((b, h, n, k), dtype),
        precedence_weights=jnp.zeros((b, h, n), dtype))
  else:
    linkage = TemporalLinkageState(
        link=jnp.zeros((b, h, n, n), dtype),
        precedence_weights=jnp.zeros((b, h, n), dtype))
  return AccessState(
      memory=jnp.zeros((b, n, config.word_size), dtype),
      read_weights=jnp.zeros((b, config.num_reads, n), dtype),
      write_weights=jnp.zeros((b, h, n), dtype),
      linkage=linkage,
      usage=jnp.zeros((b, n), dtype))


def _links_and_reads(linkage, write_weights: jax.Array,
                     prev_read_weights: jax.Array, content: jax.Array,
                     read_modes: Optional[jax.Array], memory: jax.Array,
                     link_sparsity: Optional[int], cpu_kernels: bool):
  """Steps 7-9 and 11 of DESIGN 2.3 for whichever storage ``linkage`` uses.

  ``content`` is the read content weighting ``[B, R, N]`` and ``memory`` the
  memory after this step's write. ``cpu_kernels`` lets the indexed link's
  update and read-out run as CPU kernels (on a CPU).
  Returns ``(next_linkage, read_weights [B, R, N], read_words [B, R, W])``.
  """
  if linkage is None:
    read_weights = content
    return linkage, read_weights, addressing.read_words(read_weights, memory)
  precedence = addressing.precedence_update(linkage.precedence_weights,
                                            write_weights)
  if isinstance(linkage, SparseTemporalLinkageState):
    indices, values = sparse_link.update(
        linkage.link_indices, linkage.link_values, linkage.precedence_weights,
        write_weights, use_kernel=cpu_kernels)
    read_weights, read_words = sparse_link.read_out(
        indices, values, prev_read_weights, content, read_modes, memory,
        use_kernel=cpu_kernels)
    return (SparseTemporalLinkageState(indices, values, precedence),
            read_weights, read_words)
  if link_sparsity is None:
    link, forward, backward = addressing.link_step(
        linkage.link, linkage.precedence_weights, write_weights,
        prev_read_weights)
  else:
    link = addressing.sparse_link_update(linkage.link,
                                         linkage.precedence_weights,
                                         write_weights, link_sparsity)
    forward, backward = addressing.directional_weights(link,
                                                       prev_read_weights)
  read_weights = addressing.read_weights(content, forward, backward,
                                         read_modes)
  return (TemporalLinkageState(link, precedence), read_weights,
          addressing.read_words(read_weights, memory))


def memory_step(interface: MemoryInterface, prev_state: AccessState, *,
                link_sparsity: Optional[int] = None,
                backend: str = "auto") -> Tuple[jax.Array, AccessState]:
  """One step of memory access (DESIGN 2.3), a pure function.

  Args:
    interface: the parsed, squashed :class:`MemoryInterface` (batch ``B``).
    prev_state: the :class:`AccessState` of the previous step.
    link_sparsity: ``K`` for the paper's sparse link when ``prev_state``
      holds a dense link matrix; ``None`` for the exact dense link. With an
      indexed :class:`SparseTemporalLinkageState`, ``K`` is its last axis and
      this argument must be ``None`` or equal to it.
    backend: ``"xla"`` composes the functions of :mod:`dnc_jax.addressing`
      (any device); ``"fused"`` runs the fused CPU kernel of
      :mod:`dnc_jax.fused` (float32/float64; with the sparse link, the
      kernel does all but the link, whose ``O(N·K)`` update and reads are
      composed around it); ``"auto"`` takes the fused kernel where the step
      runs on a CPU and the kernel supports it, and the XLA path elsewhere.
      Values and gradients agree.
  Returns:
    ``(read_words [B, R, W], next_state)``; ``next_state`` has exactly the
    structure of ``prev_state``.
  """
  if backend not in MEMORY_BACKENDS:
    raise ValueError(f"backend must be one of {MEMORY_BACKENDS}, got "
                     f"{backend!r}")
  _check_step_inputs(interface, prev_state, link_sparsity)
  xla_step = functools.partial(_xla_memory_step, link_sparsity=link_sparsity)
  if backend == "xla":
    return xla_step(interface, prev_state)
  sparse = link_sparsity is not None or isinstance(prev_state.linkage,
                                                   SparseTemporalLinkageState)
  if sparse:
    fused_step = functools.partial(_fused_with_xla_links,
                                   link_sparsity=link_sparsity)
    supported = fused.supports(*_without_links(interface, prev_state), None)
  else:
    fused_step = fused.memory_step
    supported = fused.supports(interface, prev_state, link_sparsity)
  if backend == "fused":
    if not supported:
      raise ValueError("the fused memory step needs float32 or float64 "
                       "arrays throughout (one dtype)")
    if not fused.available():
      raise fused.FusedKernelUnavailable(
          "the fused memory step could not be built; see the warning above")
    return fused_step(interface, prev_state)
  if not (supported and fused.available()):
    return xla_step(interface, prev_state)
  # The kernel exists only for the CPU; lowering keeps just the branch of
  # the platform the computation is placed on.
  return jax.lax.platform_dependent(interface, prev_state,
                                    cpu=fused_step, default=xla_step)


def _without_links(interface: MemoryInterface, prev_state: AccessState):
  return interface._replace(read_modes=None), prev_state._replace(linkage=None)


def _fused_with_xla_links(interface: MemoryInterface, prev_state: AccessState,
                          *, link_sparsity: Optional[int]
                          ) -> Tuple[jax.Array, AccessState]:
  """The sparse-link step: the fused kernel without links, then the links.

  The kernel computes usage, allocation, the write, and the content read
  weights (steps 1-6 and 10); steps 7-9 and 11 (the sparse link, whose work
  is ``O(N·K)``, the read modes and the read-out) follow from its results:
  for the indexed link through the CPU kernels of :mod:`dnc_jax.sparse_link`,
  for a dense-stored one through XLA.
  """
  _, inner = fused.memory_step(*_without_links(interface, prev_state))
  linkage, read_weights, read_words = _links_and_reads(
      prev_state.linkage, inner.write_weights, prev_state.read_weights,
      inner.read_weights, interface.read_modes, inner.memory, link_sparsity,
      cpu_kernels=True)
  return read_words, inner._replace(read_weights=read_weights,
                                    linkage=linkage)


def _check_step_inputs(interface: MemoryInterface, prev_state: AccessState,
                       link_sparsity: Optional[int]):
  linkage = prev_state.linkage
  if isinstance(linkage, SparseTemporalLinkageState):
    stored_k = linkage.link_indices.shape[-1]
    if link_sparsity not in (None, stored_k):
      raise ValueError(f"link_sparsity={link_sparsity} does not match the "
                       f"indexed link state, which holds K={stored_k}")
  if linkage is not None and interface.read_modes is None:
    raise ValueError("the state has temporal links but the interface has no "
                     "read_modes")


def _xla_memory_step(interface: MemoryInterface, prev_state: AccessState, *,
                     link_sparsity: Optional[int]
                     ) -> Tuple[jax.Array, AccessState]:
  """:func:`memory_step` composed from :mod:`dnc_jax.addressing`."""
  linkage = prev_state.linkage
  num_writes = prev_state.write_weights.shape[-2]

  usage = addressing.usage_update(prev_state.usage, prev_state.write_weights,
                                  interface.free_gates,
                                  prev_state.read_weights)
  write_content = addressing.content_weights(prev_state.memory,
                                             interface.write_keys,
                                             interface.write_strengths)
  allocation = addressing.write_allocation_weights(
      usage, interface.allocation_gates * interface.write_gates, num_writes)
  write_weights = addressing.write_weights(write_content, allocation,
                                           interface.allocation_gates,
                                           interface.write_gates)
  memory = addressing.erase_and_write(prev_state.memory, write_weights,
                                      interface.erase_vectors,
                                      interface.write_vectors)
  read_content = addressing.content_weights(memory, interface.read_keys,
                                            interface.read_strengths)
  linkage, read_weights, read_words = _links_and_reads(
      linkage, write_weights, prev_state.read_weights, read_content,
      interface.read_modes, memory, link_sparsity, cpu_kernels=False)
  return read_words, AccessState(memory=memory, read_weights=read_weights,
                                 write_weights=write_weights, linkage=linkage,
                                 usage=usage)


class MemoryAccess(hk.Module):
  """Projects a controller output to the interface and steps the memory.

  Owns one linear layer (controller output -> raw interface vector); the
  memory maths is :func:`memory_step`.
  """

  def __init__(self, config: DNCConfig, name: Optional[str] = None):
    super().__init__(name=name)
    self._config = config

  def initial_state(self, batch_size: int, dtype=jnp.float32) -> AccessState:
    return initial_access_state(self._config, batch_size, dtype)

  def parse(self, controller_output: jax.Array) -> MemoryInterface:
    """``[B, D]`` controller output -> squashed :class:`MemoryInterface`."""
    raw = hk.Linear(self._config.interface_size,
                    name="interface")(controller_output)
    return parse_interface(raw, self._config)

  def __call__(self, controller_output: jax.Array, prev_state: AccessState,
               ) -> Tuple[jax.Array, AccessState, MemoryInterface]:
    """Returns ``(read_words [B, R, W], next_state, interface)``."""
    interface = self.parse(controller_output)
    sparsity = None if self._config.sparse_link_indexed else (
        self._config.link_sparsity)
    read_words, state = memory_step(interface, prev_state,
                                    link_sparsity=sparsity,
                                    backend=self._config.memory_backend)
    return read_words, state, interface
