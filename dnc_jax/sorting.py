"""Row-wise argsort and top-k indices, with fast CPU kernels.

XLA's sort on the CPU is slow for the long rows of large memories (the
allocation's sort of usage, the sparse link's top-K); unless
``backend="xla"``, rows of at least ``_KERNEL_MIN_SIZE`` elements are sorted
on CPU by the kernels of ``csrc/sorting.cc`` (:mod:`dnc_jax.backend`
decides), elsewhere by ``jnp.argsort`` and ``jax.lax.top_k``. Only integer
indices come from the kernels; values are gathered in JAX, so gradients
flow as usual.
"""

from __future__ import annotations

import operator
from typing import Tuple

import jax
import jax.numpy as jnp
import numpy as np

from dnc_jax import backend as backends

# Below this many elements XLA's own sort is as fast as calling out.
_KERNEL_MIN_SIZE = 4096


def _check_rows(where: str, x) -> None:
  if np.ndim(x) < 1:
    raise ValueError(f"{where}: x must have at least one axis, got shape "
                     f"{np.shape(x)}")


def _use_kernel(x: jax.Array, backend: str) -> bool:
  return x.size >= _KERNEL_MIN_SIZE and backends.use_kernels(backend, x)


def argsort(x: jax.Array, backend: str = "auto") -> jax.Array:
  """Stable ascending argsort of the last axis (int32; ties: lower first).

  ``backend="xla"`` never calls the kernel (:mod:`dnc_jax.backend`).
  """
  backends.check_backend(backend)
  _check_rows("argsort", x)
  x = jnp.asarray(x)

  def xla(x):
    return jnp.argsort(x, axis=-1, stable=True).astype(jnp.int32)

  def kernel(x):
    return jax.ffi.ffi_call(
        backends.target(backends.ARGSORT, x.dtype),
        jax.ShapeDtypeStruct(x.shape, jnp.int32),
        vmap_method="broadcast_all")(x)

  if not _use_kernel(x, backend):
    return xla(x)
  return backends.dispatch(backend, kernel, xla, x)


def top_k(x: jax.Array, k: int,
          backend: str = "auto") -> Tuple[jax.Array, jax.Array]:
  """``(values, indices)`` of the ``k`` largest of the last axis.

  Descending; equal values keep the lower index first, as
  ``jax.lax.top_k``. Values are differentiable. ``backend="xla"`` never
  calls the kernel (:mod:`dnc_jax.backend`).

  Raises:
    ValueError: unless ``k`` is an int in ``[1, x.shape[-1]]``.
  """
  backends.check_backend(backend)
  _check_rows("top_k", x)
  x = jnp.asarray(x)
  try:
    if isinstance(k, bool):
      raise TypeError
    k = operator.index(k)
  except TypeError:
    raise ValueError(f"top_k: k must be an int, got {k!r}") from None
  if not 1 <= k <= x.shape[-1]:
    raise ValueError(f"top_k: k = {k} must be in [1, {x.shape[-1]}] for x "
                     f"of shape {x.shape}")

  def xla(x):
    return jax.lax.top_k(x, k)[1].astype(jnp.int32)

  def kernel(x):
    return jax.ffi.ffi_call(
        backends.target(backends.TOP_K, x.dtype),
        jax.ShapeDtypeStruct(x.shape[:-1] + (k,), jnp.int32),
        vmap_method="broadcast_all")(x, k=np.int64(k))

  stopped = jax.lax.stop_gradient(x)
  if not _use_kernel(x, backend):
    indices = xla(stopped)
  else:
    indices = backends.dispatch(backend, kernel, xla, stopped)
  return jnp.take_along_axis(x, indices, axis=-1), indices
