"""The exact dense link: ``[B, H, N, N]`` matrices (``docs/maths.md`` §3).

``O(N²)`` memory and work per step and head. The fused CPU kernel computes
this kind inside the memory step; on the XLA path the update and the
directional weightings are :func:`dnc_jax.addressing.link_step`, whose
hand-written VJP keeps only the previous link; with ``backend="pallas"``
they are :func:`dnc_jax.pallas_link.link_step_for_platform`, the same maths
as Pallas kernels.
"""

from __future__ import annotations

from typing import Optional, Tuple

import jax
import jax.numpy as jnp

from dnc_jax import addressing, operands, pallas_link
from dnc_jax.types import TemporalLinkageState

NAME = "dense"
FUSED = True  # The fused kernel computes this link.

LINKAGE_DIMS = {"link": ("H", "N", "N"), "precedence_weights": ("H", "N")}


def initial_state(batch_shape: Tuple[int, ...], num_writes: int,
                  memory_size: int, k: Optional[int], dtype
                  ) -> TemporalLinkageState:
  """All-zero link ``[*B, H, N, N]`` and precedence ``[*B, H, N]``."""
  del k
  head = (*batch_shape, num_writes, memory_size)
  return TemporalLinkageState(link=jnp.zeros((*head, memory_size), dtype),
                              precedence_weights=jnp.zeros(head, dtype))


def check_state(where: str, linkage, sizes, k: Optional[int],
                kind: str = NAME):
  """``ValueError`` unless ``linkage`` is a dense link fitting ``sizes``."""
  del k
  if not isinstance(linkage, TemporalLinkageState):
    raise ValueError(f"{where}: the link kind is {kind!r} (dense N×N) but "
                     f"the state's linkage is {type(linkage).__name__}")
  operands.check(where, LINKAGE_DIMS, linkage._asdict(), sizes=sizes,
                 dtypes=False)


def read(content: jax.Array, forward: jax.Array, backward: jax.Array,
         read_modes: jax.Array, memory: jax.Array,
         sharpness: Optional[jax.Array] = None):
  """Read weights from the three modes, and the words they read.

  ``sharpness`` (``[B, R, 2H]`` or ``None``) first sharpens the directional
  weightings (``docs/maths.md`` §8.3).
  """
  if sharpness is not None:
    forward, backward = addressing.sharpen_directional(forward, backward,
                                                       sharpness)
  read_weights = addressing.read_weights(content, forward, backward,
                                         read_modes)
  return read_weights, addressing.read_words(read_weights, memory)


def step(linkage: TemporalLinkageState, write_weights: jax.Array,
         prev_read_weights: jax.Array, content: jax.Array,
         read_modes: jax.Array, memory: jax.Array, *, k: Optional[int],
         backend: str, sharpness: Optional[jax.Array] = None):
  """The link update and the read-out; see :func:`dnc_jax.links.step`."""
  del k
  precedence = addressing.precedence_update(linkage.precedence_weights,
                                            write_weights)
  # "pallas": the Pallas kernels (compiled on a GPU, interpreted elsewhere).
  # Otherwise XLA's; with "auto"/"fused" on a CPU the fused step computes
  # this kind whole and this function is its XLA fallback.
  link_step = (pallas_link.link_step_for_platform if backend == "pallas"
               else addressing.link_step)
  link, forward, backward = link_step(
      linkage.link, linkage.precedence_weights, write_weights,
      prev_read_weights)
  return (TemporalLinkageState(link, precedence),
          *read(content, forward, backward, read_modes, memory, sharpness))


def dense_view(linkage: TemporalLinkageState) -> jax.Array:
  return linkage.link
