"""Row-wise argsort and top-k indices, with fast CPU kernels.

XLA's sort on the CPU is slow for the long rows of large memories (the
allocation's sort of usage, the sparse link's top-K); on CPU these use the
kernels of ``csrc/sorting.cc`` (see :mod:`dnc_jax.cpu_kernels`), elsewhere
``jnp.argsort`` and ``jax.lax.top_k``. Only integer indices come from the
kernels; values are gathered in JAX, so gradients flow as usual.
"""

from __future__ import annotations

from typing import Tuple

import jax
import jax.numpy as jnp
import numpy as np

from dnc_jax import cpu_kernels

# Below this many elements XLA's own sort is as fast as calling out.
_KERNEL_MIN_SIZE = 4096


def _use_kernel(x: jax.Array) -> bool:
  return (x.size >= _KERNEL_MIN_SIZE and np.dtype(x.dtype) in (
      np.dtype(np.float32), np.dtype(np.float64))
          and cpu_kernels.available())


def _suffix(x: jax.Array) -> str:
  return "F32" if np.dtype(x.dtype) == np.dtype(np.float32) else "F64"


def argsort(x: jax.Array) -> jax.Array:
  """Stable ascending argsort of the last axis (int32; ties: lower first)."""

  def xla(x):
    return jnp.argsort(x, axis=-1, stable=True).astype(jnp.int32)

  if not _use_kernel(x):
    return xla(x)

  def kernel(x):
    return jax.ffi.ffi_call(
        f"DncArgsort{_suffix(x)}",
        jax.ShapeDtypeStruct(x.shape, jnp.int32),
        vmap_method="broadcast_all")(x)

  return jax.lax.platform_dependent(x, cpu=kernel, default=xla)


def top_k(x: jax.Array, k: int) -> Tuple[jax.Array, jax.Array]:
  """``(values, indices)`` of the ``k`` largest of the last axis.

  Descending; equal values keep the lower index first, as
  ``jax.lax.top_k``. Values are differentiable.
  """

  def xla(x):
    return jax.lax.top_k(x, k)[1].astype(jnp.int32)

  if not _use_kernel(x):
    indices = xla(jax.lax.stop_gradient(x))
  else:
    def kernel(x):
      return jax.ffi.ffi_call(
          f"DncTopK{_suffix(x)}",
          jax.ShapeDtypeStruct(x.shape[:-1] + (k,), jnp.int32),
          vmap_method="broadcast_all")(x, k=np.int64(k))

    indices = jax.lax.platform_dependent(jax.lax.stop_gradient(x),
                                         cpu=kernel, default=xla)
  return jnp.take_along_axis(x, indices, axis=-1), indices
