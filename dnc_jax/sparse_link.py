"""The sparse temporal link (DESIGN 2.4) held as ``K`` (column, value) pairs per row.

The paper's sparse link keeps at most ``K`` entries per row (every entry
below ``1/K`` is zeroed and rows sum to at most 1), so row ``i`` is stored as
``K`` column indices and values: ``O(N·K)`` memory and work per step instead of
``O(N²)``. The maths equals :func:`dnc_jax.addressing.sparse_link_update` on
the dense matrix; the tests check values and gradients against it.

Functions here take a single write head's arrays (no batch axis) and are
lifted over batch and head axes with ``jax.vmap`` by :func:`batched`, except
:func:`update`, :func:`directional_weights` and :func:`read_out`, which take
whole batches; on the CPU ``update`` and ``read_out`` run as kernels with
their gradients (``csrc/sparse_link.cc``),
where XLA's small gathers, scatters and top-k's cost far more than the
``O(N·K)`` work itself.
"""

from __future__ import annotations

from typing import Callable, Tuple

import functools

import jax
import jax.numpy as jnp
import numpy as np

from dnc_jax import addressing, cpu_kernels, sorting


def _top_k_normalised(weights: jax.Array, k: int):
  """Top-``k`` (values rescaled to sum to 1, indices) of ``weights [N]``."""
  values, indices = sorting.top_k(weights, k)
  total = jnp.sum(values)
  positive = total > 0
  values = jnp.where(positive, values / jnp.where(positive, total, 1.0), 0.0)
  return values, indices


def link_update(prev_indices: jax.Array, prev_values: jax.Array,
                prev_precedence: jax.Array, write_weights: jax.Array,
                k: int) -> Tuple[jax.Array, jax.Array]:
  """One step of the sparse link for one write head, in ``O(N·K²)``.

  Args:
    prev_indices: ``[N, K]`` int32 column of each stored entry.
    prev_values: ``[N, K]`` its value; 0 marks an unused pair.
    prev_precedence: ``[N]`` precedence weights of the previous step.
    write_weights: ``[N]`` this step's write weights.
    k: ``K``.
  Returns:
    ``(indices [N, K], values [N, K])`` of the new link.
  """
  num_slots = write_weights.shape[-1]
  write_values, write_indices = _top_k_normalised(write_weights, k)
  sparse_write = jnp.zeros_like(write_weights).at[write_indices].add(
      write_values)
  precedence_values, precedence_indices = _top_k_normalised(prev_precedence, k)

  rows = jnp.arange(num_slots, dtype=prev_indices.dtype)[:, None]
  w_i = sparse_write[:, None]
  # Existing entries decay by (1 - ŵ[i] - ŵ[j]).
  kept = (1.0 - w_i - sparse_write[prev_indices]) * prev_values
  # New entries ŵ[i] p̂[j] for the K columns j of p̂, never on the diagonal.
  new_columns = jnp.broadcast_to(precedence_indices.astype(prev_indices.dtype),
                                 (num_slots, k))
  new_values = jnp.where(new_columns == rows, 0.0,
                         w_i * precedence_values[None, :])
  # A new entry whose column is already stored is added to that entry.
  same_column = ((prev_indices[:, :, None] == new_columns[:, None, :])
                 & (prev_values[:, :, None] > 0))
  kept = kept + jnp.einsum("nkm,nm->nk", same_column.astype(kept.dtype),
                           new_values)
  new_values = jnp.where(jnp.any(same_column, axis=1), 0.0, new_values)

  columns = jnp.concatenate([prev_indices, new_columns], axis=-1)
  values = jnp.concatenate([kept, new_values], axis=-1)
  values = jnp.where(values >= 1.0 / k, values, 0.0)
  # At most K candidates survive the 1/K threshold; keep those.
  values, chosen = sorting.top_k(values, k)
  columns = jnp.take_along_axis(columns, chosen, axis=-1)
  return columns, values


def forward_weights(indices: jax.Array, values: jax.Array,
                    read_weights: jax.Array) -> jax.Array:
  """``f = L w``: ``f[i] = Σ_k values[i, k] w[indices[i, k]]``.

  Args:
    indices: ``[N, K]``.
    values: ``[N, K]``.
    read_weights: ``[R, N]``.
  Returns:
    ``[R, N]``.
  """
  return jnp.einsum("nk,rnk->rn", values, read_weights[:, indices])


def backward_weights(indices: jax.Array, values: jax.Array,
                     read_weights: jax.Array) -> jax.Array:
  """``b = Lᵀ w``: scatter ``values[i, k] w[i]`` onto column ``indices[i, k]``.

  Args:
    indices: ``[N, K]``.
    values: ``[N, K]``.
    read_weights: ``[R, N]``.
  Returns:
    ``[R, N]``.
  """
  contributions = values[None, :, :] * read_weights[:, :, None]
  num_reads, num_slots = read_weights.shape
  flat = jnp.zeros((num_reads, num_slots), read_weights.dtype)
  return flat.at[:, indices.reshape(-1)].add(
      contributions.reshape(num_reads, -1))


def directional_weights(indices: jax.Array, values: jax.Array,
                        read_weights: jax.Array):
  """Forward ``L w`` and backward ``Lᵀ w`` reads of every head's link.

  Args:
    indices: ``[..., H, N, K]`` int32.
    values: ``[..., H, N, K]``.
    read_weights: ``[..., R, N]``, the previous step's read weights.
  Returns:
    ``(forward, backward)``, each ``[..., R, H, N]``.
  """
  batch_axes = read_weights.ndim - 2

  def per_example(indices, values, read_weights):
    # indices/values [H, N, K], read_weights [R, N] -> [R, H, N].
    over_heads = functools.partial(jax.vmap, in_axes=(0, 0, None), out_axes=1)
    return (over_heads(forward_weights)(indices, values, read_weights),
            over_heads(backward_weights)(indices, values, read_weights))

  return batched(per_example, batch_axes)(indices, values, read_weights)


def _kernel_name(stem: str, dtype) -> str:
  return stem + ("F32" if np.dtype(dtype) == np.dtype(np.float32) else "F64")


def _kernel_usable(use_kernel: bool, *floats: jax.Array) -> bool:
  dtypes = {np.dtype(x.dtype) for x in floats}
  return (use_kernel and len(dtypes) == 1
          and dtypes.pop() in (np.dtype(np.float32), np.dtype(np.float64))
          and cpu_kernels.available())


def _float0_like(x: jax.Array) -> np.ndarray:
  return np.zeros(x.shape, jax.dtypes.float0)


@jax.custom_vjp
def _update_kernel(indices, values, precedence, write_weights):
  return tuple(jax.ffi.ffi_call(
      _kernel_name("DncSparseLinkUpdate", values.dtype),
      (jax.ShapeDtypeStruct(indices.shape, jnp.int32),
       jax.ShapeDtypeStruct(values.shape, values.dtype)),
      vmap_method="broadcast_all")(indices, values, precedence,
                                   write_weights))


def _update_kernel_fwd(*args):
  return _update_kernel(*args), args


def _update_kernel_bwd(args, cotangents):
  indices, values, precedence, write_weights = args
  _, g_new_values = cotangents
  grads = jax.ffi.ffi_call(
      _kernel_name("DncSparseLinkUpdateVjp", values.dtype),
      tuple(jax.ShapeDtypeStruct(x.shape, x.dtype)
            for x in (values, precedence, write_weights)),
      vmap_method="broadcast_all")(*args, g_new_values)
  return (_float0_like(indices), *grads)


_update_kernel.defvjp(_update_kernel_fwd, _update_kernel_bwd)


def update(indices: jax.Array, values: jax.Array, precedence: jax.Array,
           write_weights: jax.Array, use_kernel: bool = True
           ) -> Tuple[jax.Array, jax.Array]:
  """:func:`link_update` for every leading (batch, head) axis.

  Args:
    indices: ``[..., N, K]`` int32.
    values: ``[..., N, K]``.
    precedence: ``[..., N]``, the previous step's.
    write_weights: ``[..., N]``, this step's.
    use_kernel: ``False`` keeps to XLA operations on every platform.
  Returns:
    ``(indices, values)`` of the new link, ``[..., N, K]``.
  """
  k = indices.shape[-1]

  def xla(indices, values, precedence, write_weights):
    step = batched(functools.partial(link_update, k=k), indices.ndim - 2)
    return step(indices, values, precedence, write_weights)

  if not _kernel_usable(use_kernel, values, precedence, write_weights):
    return xla(indices, values, precedence, write_weights)
  return jax.lax.platform_dependent(indices, values, precedence,
                                    write_weights, cpu=_update_kernel,
                                    default=xla)


def _read_out_xla(indices, values, prev_read_weights, content, read_modes,
                  memory):
  forward, backward = directional_weights(indices, values, prev_read_weights)
  read_weights = addressing.read_weights(content, forward, backward,
                                         read_modes)
  return read_weights, addressing.read_words(read_weights, memory)


@jax.custom_vjp
def _read_out_kernel(indices, values, prev_read_weights, content, read_modes,
                     memory):
  return tuple(jax.ffi.ffi_call(
      _kernel_name("DncSparseReadOut", values.dtype),
      (jax.ShapeDtypeStruct(content.shape, content.dtype),
       jax.ShapeDtypeStruct(content.shape[:-1] + memory.shape[-1:],
                            memory.dtype)),
      vmap_method="broadcast_all")(indices, values, prev_read_weights,
                                   content, read_modes, memory))


def _read_out_kernel_fwd(*args):
  return _read_out_kernel(*args), args


def _read_out_kernel_bwd(args, cotangents):
  indices = args[0]
  grads = jax.ffi.ffi_call(
      _kernel_name("DncSparseReadOutVjp", args[1].dtype),
      tuple(jax.ShapeDtypeStruct(x.shape, x.dtype) for x in args[1:]),
      vmap_method="broadcast_all")(*args, *cotangents)
  return (_float0_like(indices), *grads)


_read_out_kernel.defvjp(_read_out_kernel_fwd, _read_out_kernel_bwd)


def read_out(indices: jax.Array, values: jax.Array,
             prev_read_weights: jax.Array, content: jax.Array,
             read_modes: jax.Array, memory: jax.Array,
             use_kernel: bool = True) -> Tuple[jax.Array, jax.Array]:
  """Read weights and read words through the indexed link (steps 9, 11).

  The directional reads (:func:`directional_weights`) mixed with the
  content weights by the read modes (:func:`dnc_jax.addressing.
  read_weights`), and the words they read.

  Args:
    indices, values: the new link, ``[..., H, N, K]``.
    prev_read_weights: ``[..., R, N]``.
    content: ``[..., R, N]`` content read weights.
    read_modes: ``[..., R, 1 + 2H]`` (backward × H, content, forward × H).
    memory: ``[..., N, W]``, after this step's write.
    use_kernel: ``False`` keeps to XLA operations on every platform.
  Returns:
    ``(read_weights [..., R, N], read_words [..., R, W])``.
  """
  args = (indices, values, prev_read_weights, content, read_modes, memory)
  if not _kernel_usable(use_kernel, *args[1:]):
    return _read_out_xla(*args)
  return jax.lax.platform_dependent(*args, cpu=_read_out_kernel,
                                    default=_read_out_xla)


def to_dense(indices: jax.Array, values: jax.Array) -> jax.Array:
  """The ``[N, N]`` matrix held by ``(indices [N, K], values [N, K])``."""
  num_slots = indices.shape[0]
  rows = jnp.broadcast_to(jnp.arange(num_slots)[:, None], indices.shape)
  return jnp.zeros((num_slots, num_slots), values.dtype).at[rows,
                                                            indices].add(values)


def batched(fn: Callable, num_axes: int) -> Callable:
  """``fn`` vmapped over ``num_axes`` leading axes of every argument."""
  for _ in range(num_axes):
    fn = jax.vmap(fn)
  return fn
