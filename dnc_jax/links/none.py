"""No temporal link: reads are by content only (``use_temporal_links=False``).

The state's linkage is ``None`` and the read weights are the content read
weights (``docs/maths.md`` §3, step 9).
"""

from __future__ import annotations

from typing import Optional, Tuple

import jax

from dnc_jax import addressing

NAME = "none"
FUSED = True  # The fused kernel computes the whole step.


def initial_state(batch_shape: Tuple[int, ...], num_writes: int,
                  memory_size: int, k: Optional[int], dtype) -> None:
  del batch_shape, num_writes, memory_size, k, dtype
  return None


def check_state(where: str, linkage, sizes, k: Optional[int]):
  """``ValueError`` unless ``linkage`` is ``None``."""
  del sizes
  if linkage is not None:
    raise ValueError(f"{where}: the link kind is 'none' but the state holds "
                     f"a {type(linkage).__name__}")
  if k is not None:
    raise ValueError(f"{where}: link_sparsity={k} given but the state has no "
                     "temporal links")


def step(linkage: None, write_weights: jax.Array,
         prev_read_weights: jax.Array, content: jax.Array,
         read_modes: Optional[jax.Array], memory: jax.Array, *,
         k: Optional[int], backend: str):
  del write_weights, prev_read_weights, read_modes, k, backend
  return linkage, content, addressing.read_words(content, memory)


def dense_view(linkage: None) -> None:
  del linkage
  return None
