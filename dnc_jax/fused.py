"""The memory step as one fused CPU kernel (``csrc/memory_step.cc``).

Under XLA:CPU a memory step is a hundred small operations; the kernel runs
each example's whole step, and its vector-Jacobian product, in one pass over
cached data, the examples of a batch in parallel. It computes exactly what
:func:`dnc_jax.access.memory_step` computes with the XLA path (the tests
compare values and gradients), for the dense temporal link or none, in
float32 or float64.

The kernel is built by :mod:`dnc_jax.cpu_kernels` (compiled on first use,
cached); where it cannot be built the library warns once and uses the XLA
path.
"""

from __future__ import annotations

from typing import NamedTuple, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from dnc_jax import backend as backends
from dnc_jax import links as link_kinds
from dnc_jax import operands
from dnc_jax.cpu_kernels import FusedKernelUnavailable, available
from dnc_jax.types import (INTERFACE_OPTION_FIELDS, AccessState,
                           MemoryInterface, TemporalLinkageState)

__all__ = ["FusedKernelUnavailable", "KernelInputs", "KernelOutputs",
           "available", "check_operands", "memory_step", "supports"]


def supports(interface: MemoryInterface, state: AccessState,
             link_sparsity=None, deallocation: bool = False) -> bool:
  """Whether the kernel computes this step: dense link or none, f32/f64.

  ``link_sparsity`` is kept for compatibility: a sparse link is not
  computed by this kernel (the memory step runs it without links and adds
  the link around it; see :mod:`dnc_jax.links`). The kernel implements none
  of the options of ``docs/maths.md`` §8 (content masks, de-allocation,
  link sharpness): with any of them it does not apply.
  """
  if deallocation or any(getattr(interface, f) is not None
                         for f in INTERFACE_OPTION_FIELDS):
    return False
  if not link_kinds.from_state(state.linkage, link_sparsity).fused:
    return False
  return backends.kernel_dtype_ok(*jax.tree.leaves((interface, state)))


class KernelInputs(NamedTuple):
  """The kernel's operands, in the order ``csrc/memory_step.cc`` takes them.

  Without links, ``read_modes``, ``link`` and ``precedence`` are arrays with
  no elements (``[B, R, 0]``, ``[B, H, 0, 0]``, ``[B, H, 0]``).
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
  read_modes: jax.Array
  memory: jax.Array
  read_weights: jax.Array
  write_weights: jax.Array
  link: jax.Array
  precedence: jax.Array
  usage: jax.Array


class KernelOutputs(NamedTuple):
  """The forward kernel's results, in order.

  The backward kernel takes ``(*KernelInputs, *cotangents of KernelOutputs)``
  and returns the cotangents of :class:`KernelInputs`, in those orders.
  """

  read_words: jax.Array
  memory: jax.Array
  read_weights: jax.Array
  write_weights: jax.Array
  link: jax.Array
  precedence: jax.Array
  usage: jax.Array


# Trailing dimensions of each operand after the shared batch axes. ``M`` is
# the number of read modes and ``L`` the link's side: 1 + 2H and N with
# links, 0 and 0 without.
INPUT_DIMS = KernelInputs(
    **operands.INTERFACE_DIMS, **operands.STATE_DIMS,
    link=("H", "L", "L"), precedence=("H", "L"))
OUTPUT_DIMS = KernelOutputs(
    read_words=("R", "W"), memory=("N", "W"), read_weights=("R", "N"),
    write_weights=("H", "N"), link=("H", "L", "L"), precedence=("H", "L"),
    usage=("N",))


def check_operands(where: str, inputs: KernelInputs, links: bool,
                   cotangents=None):
  """``ValueError`` unless the operands fit together and share a dtype.

  Args:
    where: the kernel, for the messages.
    inputs: the :class:`KernelInputs`.
    links: whether the link operands are real (else empty).
    cotangents: the :class:`KernelOutputs` cotangents (backward only).
  """
  sizes = operands.check(where, INPUT_DIMS._asdict(), inputs._asdict())
  h, n = sizes["H"][0], sizes["N"][0]
  operands.require(where, "M", sizes, 1 + 2 * h if links else 0,
                   "the number of read modes, 1 + 2H," if links else
                   "the read modes' width without links")
  operands.require(where, "L", sizes, n if links else 0,
                   "the link's side, N," if links else
                   "the link's side without links")
  if cotangents is not None:
    operands.check(where, {f"g_{k}": v for k, v in
                           OUTPUT_DIMS._asdict().items()},
                   {f"g_{k}": v for k, v in cotangents._asdict().items()},
                   sizes=sizes)
    dtype = np.dtype(inputs.memory.dtype)
    for name, x in cotangents._asdict().items():
      if np.dtype(x.dtype) != dtype:
        raise ValueError(f"{where}: cotangent of {name} has dtype "
                         f"{np.dtype(x.dtype)}, the operands {dtype}")


# The interface fields other than the read modes (and the options the kernel
# does not take), named alike in both.
_GATES_AND_KEYS = tuple(
    f for f in MemoryInterface._fields
    if f != "read_modes" and f not in INTERFACE_OPTION_FIELDS)


def _flat_inputs(interface: MemoryInterface, state: AccessState):
  """The kernel's inputs; absent links become arrays with no elements."""
  memory = state.memory
  batch = memory.shape[:-2]
  num_writes = state.write_weights.shape[-2]
  num_reads = state.read_weights.shape[-2]
  links = state.linkage is not None
  empty = lambda *shape: jnp.zeros((*batch, *shape), memory.dtype)
  return KernelInputs(
      **{f: getattr(interface, f) for f in _GATES_AND_KEYS},
      read_modes=interface.read_modes if links else empty(num_reads, 0),
      memory=memory, read_weights=state.read_weights,
      write_weights=state.write_weights,
      link=state.linkage.link if links else empty(num_writes, 0, 0),
      precedence=(state.linkage.precedence_weights if links
                  else empty(num_writes, 0)),
      usage=state.usage), links


def _shape_dtypes(arrays):
  return [jax.ShapeDtypeStruct(a.shape, a.dtype) for a in arrays]


# The backward kernel turns the link's cotangent into the previous step's
# one row at a time, each row read before it is written, so the result may
# take the operand's buffer: XLA then updates the backward scan's carry in
# place instead of copying N x N per example and step into it. (Not the
# forward link: the old one is kept as a residual, so aliasing it costs a
# copy rather than saving one.) Operand index -> result index.
_LINK_IN_PLACE = {
    "forward": {},
    "backward": {len(KernelInputs._fields) + KernelOutputs._fields.index(
        "link"): KernelInputs._fields.index("link")},
}
_STEMS = {"forward": backends.MEMORY_STEP_FORWARD,
          "backward": backends.MEMORY_STEP_BACKWARD}


def _call(direction: str, dtype, outputs, args, links: bool):
  if not available():
    raise FusedKernelUnavailable(
        "the fused memory step could not be built; see the warning above")
  target = backends.target(_STEMS[direction], dtype)
  return jax.ffi.ffi_call(target, _shape_dtypes(outputs),
                          vmap_method="broadcast_all",
                          input_output_aliases=_LINK_IN_PLACE[direction])(
                              *args, links=np.int64(links))


@jax.custom_vjp
def memory_step(interface: MemoryInterface,
                prev_state: AccessState) -> Tuple[jax.Array, AccessState]:
  """:func:`dnc_jax.memory_step` through the fused kernel (CPU only).

  Same arguments and results; the dense temporal link or none.

  Raises:
    ValueError: when an operand's shape or dtype does not fit the others.
  """
  args, links = _flat_inputs(interface, prev_state)
  check_operands("fused memory step", args, links)
  memory = prev_state.memory
  read_words = jnp.zeros((*memory.shape[:-2], prev_state.read_weights.shape[-2],
                          memory.shape[-1]), memory.dtype)
  outputs = KernelOutputs(read_words, args.memory, args.read_weights,
                          args.write_weights, args.link, args.precedence,
                          args.usage)
  out = KernelOutputs(*_call("forward", memory.dtype, outputs, args, links))
  linkage = TemporalLinkageState(out.link, out.precedence) if links else None
  return out.read_words, AccessState(out.memory, out.read_weights,
                                     out.write_weights, linkage, out.usage)


def _memory_step_fwd(interface, prev_state):
  return memory_step(interface, prev_state), (interface, prev_state)


def _memory_step_bwd(residuals, cotangents):
  interface, prev_state = residuals
  g_words, g_state = cotangents
  args, links = _flat_inputs(interface, prev_state)
  g_linkage = g_state.linkage
  g_outputs = KernelOutputs(
      read_words=g_words, memory=g_state.memory,
      read_weights=g_state.read_weights, write_weights=g_state.write_weights,
      link=g_linkage.link if links else args.link,
      precedence=g_linkage.precedence_weights if links else args.precedence,
      usage=g_state.usage)
  check_operands("fused memory step (backward)", args, links, g_outputs)
  grads = KernelInputs(*_call("backward", prev_state.memory.dtype, args,
                              (*args, *g_outputs), links))
  g_interface = MemoryInterface(
      **{f: getattr(grads, f) for f in _GATES_AND_KEYS},
      read_modes=grads.read_modes if links else None)
  g_linkage = (TemporalLinkageState(grads.link, grads.precedence) if links
               else None)
  return g_interface, AccessState(grads.memory, grads.read_weights,
                                  grads.write_weights, g_linkage, grads.usage)


memory_step.defvjp(_memory_step_fwd, _memory_step_bwd)
