"""The sparse link stored as a dense, truncated ``[B, H, N, N]`` matrix.

The paper's sparse link (``docs/maths.md`` §4: top-``K`` write and
precedence weights, entries below ``1/K`` zeroed) kept in the dense layout:
``O(N²)`` memory, the reference for the indexed kind. On the fused backend
the kernel computes everything but this link, which XLA composes around it.
"""

from __future__ import annotations

from typing import Optional

import jax

from dnc_jax import addressing
from dnc_jax.links import dense
from dnc_jax.types import TemporalLinkageState

NAME = "truncated"
FUSED = False  # The fused kernel runs without links; XLA does this one.

initial_state = dense.initial_state
dense_view = dense.dense_view


def check_state(where: str, linkage, sizes, k: Optional[int]):
  """``ValueError`` unless ``linkage`` is a dense link and ``K`` fits."""
  dense.check_state(where, linkage, sizes, k, kind=NAME)
  n = linkage.link.shape[-1]
  if k is None or not 1 <= k <= n:
    raise ValueError(f"{where}: link_sparsity must be an int in [1, N = {n}], "
                     f"got {k!r}")


def step(linkage: TemporalLinkageState, write_weights: jax.Array,
         prev_read_weights: jax.Array, content: jax.Array,
         read_modes: jax.Array, memory: jax.Array, *, k: int, backend: str,
         sharpness: Optional[jax.Array] = None):
  """The link update and the read-out; see :func:`dnc_jax.links.step`."""
  precedence = addressing.precedence_update(linkage.precedence_weights,
                                            write_weights)
  link = addressing.sparse_link_update(linkage.link,
                                       linkage.precedence_weights,
                                       write_weights, k, backend=backend)
  forward, backward = addressing.directional_weights(link, prev_read_weights)
  return (TemporalLinkageState(link, precedence),
          *dense.read(content, forward, backward, read_modes, memory,
                      sharpness))
