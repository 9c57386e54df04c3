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

from typing import Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from dnc_jax.cpu_kernels import FusedKernelUnavailable, available
from dnc_jax.types import AccessState, MemoryInterface, TemporalLinkageState

_TARGETS = {
    ("forward", np.dtype(np.float32)): "DncMemoryStepForwardF32",
    ("forward", np.dtype(np.float64)): "DncMemoryStepForwardF64",
    ("backward", np.dtype(np.float32)): "DncMemoryStepBackwardF32",
    ("backward", np.dtype(np.float64)): "DncMemoryStepBackwardF64",
}


def supports(interface: MemoryInterface, state: AccessState,
             link_sparsity: Optional[int]) -> bool:
  """Whether the kernel computes this step: dense link or none, f32/f64."""
  if link_sparsity is not None:
    return False
  if state.linkage is not None and not isinstance(state.linkage,
                                                  TemporalLinkageState):
    return False
  dtypes = {np.dtype(x.dtype) for x in jax.tree.leaves((interface, state))}
  return len(dtypes) == 1 and dtypes.pop() in (np.dtype(np.float32),
                                                np.dtype(np.float64))


_INTERFACE_FIELDS = MemoryInterface._fields


def _flat_inputs(interface: MemoryInterface, state: AccessState):
  """The kernel's 16 inputs; absent links become arrays with no elements."""
  memory = state.memory
  batch = memory.shape[:-2]
  num_writes = state.write_weights.shape[-2]
  num_reads = state.read_weights.shape[-2]
  links = state.linkage is not None
  empty = lambda *shape: jnp.zeros((*batch, *shape), memory.dtype)
  read_modes = interface.read_modes if links else empty(num_reads, 0)
  link = state.linkage.link if links else empty(num_writes, 0, 0)
  precedence = (state.linkage.precedence_weights if links
                else empty(num_writes, 0))
  fields = [getattr(interface, f) for f in _INTERFACE_FIELDS[:-1]]
  return (*fields, read_modes, memory, state.read_weights,
          state.write_weights, link, precedence, state.usage), links


def _shape_dtypes(arrays):
  return [jax.ShapeDtypeStruct(a.shape, a.dtype) for a in arrays]


# The backward kernel turns the link's cotangent into the previous step's
# one row at a time, each row read before it is written, so the result may
# take the operand's buffer: XLA then updates the backward scan's carry in
# place instead of copying N x N per example and step into it. (Not the
# forward link: the old one is kept as a residual, so aliasing it costs a
# copy rather than saving one.) Operand index -> result index.
_LINK_IN_PLACE = {"forward": {}, "backward": {20: 13}}


def _call(direction: str, dtype, outputs, args, links: bool):
  if not available():
    raise FusedKernelUnavailable(
        "the fused memory step could not be built; see the warning above")
  target = _TARGETS[(direction, np.dtype(dtype))]
  return jax.ffi.ffi_call(target, _shape_dtypes(outputs),
                          vmap_method="broadcast_all",
                          input_output_aliases=_LINK_IN_PLACE[direction])(
                              *args, links=np.int64(links))


@jax.custom_vjp
def memory_step(interface: MemoryInterface,
                prev_state: AccessState) -> Tuple[jax.Array, AccessState]:
  """:func:`dnc_jax.memory_step` through the fused kernel (CPU only).

  Same arguments and results; the dense temporal link or none.
  """
  args, links = _flat_inputs(interface, prev_state)
  memory = prev_state.memory
  read_words = jnp.zeros((*memory.shape[:-2], prev_state.read_weights.shape[-2],
                          memory.shape[-1]), memory.dtype)
  outputs = (read_words, *args[10:])
  (words, memory, read_weights, write_weights, link, precedence,
   usage) = _call("forward", memory.dtype, outputs, args, links)
  linkage = TemporalLinkageState(link, precedence) if links else None
  return words, AccessState(memory, read_weights, write_weights, linkage,
                            usage)


def _memory_step_fwd(interface, prev_state):
  return memory_step(interface, prev_state), (interface, prev_state)


def _memory_step_bwd(residuals, cotangents):
  interface, prev_state = residuals
  g_words, g_state = cotangents
  args, links = _flat_inputs(interface, prev_state)
  g_linkage = g_state.linkage
  state_cotangents = (
      g_state.memory, g_state.read_weights, g_state.write_weights,
      g_linkage.link if links else args[13],
      g_linkage.precedence_weights if links else args[14], g_state.usage)
  grads = _call("backward", prev_state.memory.dtype, args,
                (*args, g_words, *state_cotangents), links)
  g_interface = MemoryInterface(*grads[:9],
                                read_modes=grads[9] if links else None)
  (g_memory, g_read_weights, g_write_weights, g_link, g_precedence,
   g_usage) = grads[10:]
  g_linkage = TemporalLinkageState(g_link, g_precedence) if links else None
  return g_interface, AccessState(g_memory, g_read_weights, g_write_weights,
                                  g_linkage, g_usage)


memory_step.defvjp(_memory_step_fwd, _memory_step_bwd)
