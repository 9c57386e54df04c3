"""Memory access: the pure memory step and the Haiku module around it."""

from __future__ import annotations

import functools
from typing import Optional, Tuple

import haiku as hk
import jax
import jax.numpy as jnp

from dnc_jax import addressing
from dnc_jax import backend as backends
from dnc_jax import fused
from dnc_jax import links
from dnc_jax import operands
from dnc_jax.config import DNCConfig, batch_shape
from dnc_jax.interface import parse_interface
from dnc_jax.types import AccessState, MemoryInterface


def initial_access_state(config: DNCConfig, batch_size: Optional[int],
                         dtype=jnp.float32) -> AccessState:
  """The all-zero state (``docs/maths.md`` §3), with ``config``'s link kind.

  Shapes: memory ``[B, N, W]``, read weights ``[B, R, N]``, write weights
  ``[B, H, N]``, usage ``[B, N]``; the linkage is what
  :func:`dnc_jax.links.from_config` picks: a :class:`TemporalLinkageState`
  (link ``[B, H, N, N]``), a :class:`SparseTemporalLinkageState`
  (``[B, H, N, K]`` pairs) or ``None`` without temporal links. With
  ``batch_size=None`` the leading ``B`` axis is absent (as ``hk.LSTM``).

  Raises:
    ValueError: unless ``batch_size`` is ``None`` or an int >= 1.
  """
  batch = batch_shape(batch_size)
  n, h = config.memory_size, config.num_writes
  return AccessState(
      memory=jnp.zeros((*batch, n, config.word_size), dtype),
      read_weights=jnp.zeros((*batch, config.num_reads, n), dtype),
      write_weights=jnp.zeros((*batch, h, n), dtype),
      linkage=links.from_config(config).initial_state(batch, h, n, dtype),
      usage=jnp.zeros((*batch, n), dtype))


def memory_step(interface: MemoryInterface, prev_state: AccessState, *,
                link_sparsity: Optional[int] = None,
                backend: str = "auto",
                deallocation: bool = False) -> Tuple[jax.Array, AccessState]:
  """One step of memory access (``docs/maths.md`` §3), a pure function.

  Args:
    interface: the parsed, squashed :class:`MemoryInterface` (batch ``B``).
    prev_state: the :class:`AccessState` of the previous step.
    link_sparsity: ``K`` for the paper's sparse link when ``prev_state``
      holds a dense link matrix; ``None`` for the exact dense link. With an
      indexed :class:`SparseTemporalLinkageState`, ``K`` is its last axis and
      this argument must be ``None`` or equal to it.
    backend: ``"xla"`` composes the functions of :mod:`dnc_jax.addressing`
      and issues no custom call (any device); ``"fused"`` runs the fused
      CPU kernel of :mod:`dnc_jax.fused` (float32/float64; with the sparse
      link, the kernel does all but the link, whose ``O(N·K)`` update and
      reads are composed around it); ``"auto"`` takes the kernels where the
      step runs on a CPU and they support it, and XLA elsewhere (see
      :mod:`dnc_jax.backend`); ``"pallas"`` is the XLA path with the dense
      link's update and directional weightings as the Pallas kernels of
      :mod:`dnc_jax.pallas_link` (compiled on a GPU, interpreted
      elsewhere; other link kinds stay on XLA). Values and gradients
      agree.
    deallocation: scale the memory by the retention ``ψ`` before the write
      (``docs/maths.md`` §8.2). This and the interface's ``read_masks``,
      ``write_masks`` and ``link_sharpness`` (§8.1, §8.3: used when not
      ``None``) run on the XLA path only: ``"auto"`` then takes it, and
      ``"fused"`` raises.
  Returns:
    ``(read_words [B, R, W], next_state)``; ``next_state`` has exactly the
    structure of ``prev_state``.
  Raises:
    ValueError: for an unknown backend, a bad ``link_sparsity``, arrays
      whose shapes do not fit together (naming the operand), or options
      with ``backend="fused"`` (naming them).
  """
  backends.check_backend(backend)
  if not isinstance(deallocation, bool):
    raise ValueError(f"deallocation must be a bool, got {deallocation!r}")
  link = links.from_state(prev_state.linkage, link_sparsity)
  return _memory_step(interface, prev_state, link, backend,
                      deallocation=deallocation)


def step_options(interface: MemoryInterface,
                 deallocation: bool = False) -> Tuple[str, ...]:
  """The options of ``docs/maths.md`` §8 a step uses (config field names)."""
  used = []
  if interface.read_masks is not None or interface.write_masks is not None:
    used.append("content_masking")
  if deallocation:
    used.append("deallocation")
  if interface.link_sharpness is not None:
    used.append("link_sharpness")
  return tuple(used)


def _memory_step(interface: MemoryInterface, prev_state: AccessState,
                 link: links.Link, backend: str, sizes=None,
                 deallocation: bool = False):
  """:func:`memory_step` for a known link kind (``sizes``: see below)."""
  _check_step_inputs(interface, prev_state, link, sizes)
  xla_step = functools.partial(_xla_memory_step, link=link, backend=backend,
                               deallocation=deallocation)
  options = step_options(interface, deallocation)
  if options and backend == "fused":
    raise ValueError(f"backend='fused': the fused memory step does not "
                     f"implement {', '.join(options)}; use 'auto' or 'xla'")
  if backend in ("xla", "pallas") or options:
    # "pallas": the XLA step, whose dense link step is the Pallas kernel.
    return xla_step(interface, prev_state)
  if link.fused:
    fused_step = fused.memory_step
    floats = (interface, prev_state)
  else:
    fused_step = functools.partial(_fused_with_links, link=link,
                                   backend=backend)
    floats = _without_links(interface, prev_state)
  supported = backends.kernel_dtype_ok(*jax.tree.leaves(floats))
  if backend == "fused":
    if not supported:
      raise ValueError("the fused memory step needs float32 or float64 "
                       "arrays throughout (one dtype)")
    if not fused.available():
      raise fused.FusedKernelUnavailable(
          "the fused memory step could not be built; see the warning above")
    return fused_step(interface, prev_state)
  if not (supported and backends.kernels_available()):
    return xla_step(interface, prev_state)
  # The kernel exists only for the CPU; lowering keeps just the branch of
  # the platform the computation is placed on.
  return jax.lax.platform_dependent(interface, prev_state,
                                    cpu=fused_step, default=xla_step)


def _without_links(interface: MemoryInterface, prev_state: AccessState):
  # Only reached without the options of §8, whose fields are then None.
  return interface._replace(read_modes=None), prev_state._replace(linkage=None)


def _fused_with_links(interface: MemoryInterface, prev_state: AccessState,
                      *, link: links.Link, backend: str
                      ) -> Tuple[jax.Array, AccessState]:
  """A sparse-link step: the fused kernel without links, then the links.

  The kernel computes usage, allocation, the write, and the content read
  weights (steps 1-6 of ``docs/maths.md`` §3); the link kind computes steps
  7-10 from its results (§6).
  """
  _, inner = fused.memory_step(*_without_links(interface, prev_state))
  linkage, read_weights, read_words = link.step(
      prev_state.linkage, inner.write_weights, prev_state.read_weights,
      inner.read_weights, interface.read_modes, inner.memory,
      backend=backend)
  return read_words, inner._replace(read_weights=read_weights,
                                    linkage=linkage)


def _check_step_inputs(interface: MemoryInterface, prev_state: AccessState,
                       link: links.Link, sizes=None):
  """``ValueError`` unless the state and interface fit together (static).

  ``sizes`` may bind ``N``, ``W``, ``R``, ``H`` beforehand (e.g. from the
  configuration) as ``{symbol: (size, where it comes from)}``.
  """
  where = "memory_step"
  sizes = operands.check(where, operands.STATE_DIMS, prev_state._asdict(),
                         sizes=sizes, dtypes=False)
  link.check_state(where, prev_state.linkage, sizes)
  if link.name != "none" and interface.read_modes is None:
    raise ValueError("the state has temporal links but the interface has no "
                     "read_modes")
  dims = dict(operands.INTERFACE_DIMS)
  if link.name == "none":
    dims["read_modes"] = ("R", "unused")  # Ignored: any width.
  sizes = operands.check(where, dims, interface._asdict(), sizes=sizes,
                         dtypes=False)
  if link.name != "none":
    operands.require(where, "M", sizes, 1 + 2 * sizes["H"][0],
                     "the number of read modes, 1 + 2H,")
  if (interface.read_masks is None) != (interface.write_masks is None):
    raise ValueError(f"{where}: read_masks and write_masks must both be "
                     "given (content_masking) or both be None")
  sizes = operands.check(where, OPTION_DIMS, interface._asdict(), sizes=sizes,
                         dtypes=False)
  if interface.link_sharpness is not None:
    if link.name == "none":
      raise ValueError(f"{where}: link_sharpness given but the state has no "
                       "temporal links")
    operands.require(where, "S", sizes, 2 * sizes["H"][0],
                     "link_sharpness's width, 2H,")


# Trailing dimensions of the option fields of docs/maths.md §8.
OPTION_DIMS = {"read_masks": ("R", "W"), "write_masks": ("H", "W"),
               "link_sharpness": ("R", "S")}


def _xla_memory_step(interface: MemoryInterface, prev_state: AccessState, *,
                     link: links.Link, backend: str,
                     deallocation: bool = False
                     ) -> Tuple[jax.Array, AccessState]:
  """:func:`memory_step` composed from :mod:`dnc_jax.addressing`.

  With the options of ``docs/maths.md`` §8 where the interface (or
  ``deallocation``) asks for them.
  """
  num_writes = prev_state.write_weights.shape[-2]

  usage = addressing.usage_update(prev_state.usage, prev_state.write_weights,
                                  interface.free_gates,
                                  prev_state.read_weights)
  write_content = addressing.content_weights(prev_state.memory,
                                             interface.write_keys,
                                             interface.write_strengths,
                                             interface.write_masks)
  allocation = addressing.write_allocation_weights(
      usage, interface.allocation_gates * interface.write_gates, num_writes,
      backend=backend)
  write_weights = addressing.write_weights(write_content, allocation,
                                           interface.allocation_gates,
                                           interface.write_gates)
  prev_memory = prev_state.memory
  if deallocation:
    prev_memory = prev_memory * addressing.retention(
        interface.free_gates, prev_state.read_weights)[..., None]
  memory = addressing.erase_and_write(prev_memory, write_weights,
                                      interface.erase_vectors,
                                      interface.write_vectors)
  read_content = addressing.content_weights(memory, interface.read_keys,
                                            interface.read_strengths,
                                            interface.read_masks)
  linkage, read_weights, read_words = link.step(
      prev_state.linkage, write_weights, prev_state.read_weights,
      read_content, interface.read_modes, memory, backend=backend,
      sharpness=interface.link_sharpness)
  return read_words, AccessState(memory=memory, read_weights=read_weights,
                                 write_weights=write_weights, linkage=linkage,
                                 usage=usage)


class MemoryAccess(hk.Module):
  """Projects a controller output to the interface and steps the memory.

  Owns one linear layer (controller output -> raw interface vector); the
  memory maths is :func:`memory_step`, for the link kind
  :func:`dnc_jax.links.from_config` picks.
  """

  def __init__(self, config: DNCConfig, name: Optional[str] = None):
    super().__init__(name=name)
    self._config = config
    self._link = links.from_config(config)

  def initial_state(self, batch_size: Optional[int],
                    dtype=jnp.float32) -> AccessState:
    return initial_access_state(self._config, batch_size, dtype)

  def parse(self, controller_output: jax.Array) -> MemoryInterface:
    """``[B, D]`` controller output -> squashed :class:`MemoryInterface`.

    With ``config.interface_layer_norm`` the raw vector is layer-normalised
    first (``docs/maths.md`` §8.6).
    """
    raw = hk.Linear(self._config.interface_size,
                    name="interface")(controller_output)
    if self._config.interface_layer_norm:
      raw = hk.LayerNorm(axis=-1, create_scale=True, create_offset=True,
                         name="interface_layer_norm")(raw)
    return parse_interface(raw, self._config)

  def __call__(self, controller_output: jax.Array, prev_state: AccessState,
               ) -> Tuple[jax.Array, AccessState, MemoryInterface]:
    """Returns ``(read_words [B, R, W], next_state, interface)``."""
    interface = self.parse(controller_output)
    config = self._config
    sizes = {symbol: (size, f"config.{field} = {size}") for symbol, field, size
             in (("N", "memory_size", config.memory_size),
                 ("W", "word_size", config.word_size),
                 ("R", "num_reads", config.num_reads),
                 ("H", "num_writes", config.num_writes))}
    read_words, state = _memory_step(interface, prev_state, self._link,
                                     config.memory_backend, sizes,
                                     deallocation=config.deallocation)
    return read_words, state, interface
