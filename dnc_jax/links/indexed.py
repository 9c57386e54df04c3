"""Indexed link: the sparse link held as ``K`` (column, value) pairs per row.

The paper's sparse link (``docs/maths.md`` §4) keeps at most ``K`` entries
per row (every entry below ``1/K`` is zeroed and rows sum to at most 1), so
row ``i`` is stored as ``K`` column indices and values: ``O(N·K)`` memory and
work per step instead of ``O(N²)``. The maths equals
:func:`dnc_jax.addressing.sparse_link_update` on the dense matrix (the
``truncated`` kind); the tests check values and gradients against it.

Functions here take a single write head's arrays (no batch axis) and are
lifted over batch and head axes with ``jax.vmap`` by :func:`batched`, except
:func:`update`, :func:`directional_weights`, :func:`read_out` and
:func:`link_step`, which take whole batches; unless ``backend="xla"``,
``update``, ``read_out`` and ``link_step`` (both in one pass, what a memory
step runs) are CPU kernels with their gradients (``csrc/sparse_link.cc``),
where XLA's small gathers, scatters and top-k's cost far more than the
``O(N·K)`` work itself.

The link-kind interface (see :mod:`dnc_jax.links`) is at the end.
"""

from __future__ import annotations

import functools
from typing import Callable, NamedTuple, Optional, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from dnc_jax import addressing
from dnc_jax import backend as backends
from dnc_jax import operands, sorting
from dnc_jax.types import SparseTemporalLinkageState

NAME = "indexed"
# The fused memory-step kernel does not compute this kind's link.
FUSED = False


def _top_k_normalised(weights: jax.Array, k: int, backend: str):
  """Top-``k`` (values rescaled to sum to 1, indices) of ``weights [N]``."""
  values, indices = sorting.top_k(weights, k, backend=backend)
  total = jnp.sum(values)
  positive = total > 0
  values = jnp.where(positive, values / jnp.where(positive, total, 1.0), 0.0)
  return values, indices


def link_update(prev_indices: jax.Array, prev_values: jax.Array,
                prev_precedence: jax.Array, write_weights: jax.Array,
                k: int, backend: str = "auto"
                ) -> Tuple[jax.Array, jax.Array]:
  """One step of the sparse link for one write head, in ``O(N·K²)``.

  Args:
    prev_indices: ``[N, K]`` int32 column of each stored entry.
    prev_values: ``[N, K]`` its value; 0 marks an unused pair.
    prev_precedence: ``[N]`` precedence weights of the previous step.
    write_weights: ``[N]`` this step's write weights.
    k: ``K``.
    backend: for the top-k's (:mod:`dnc_jax.backend`).
  Returns:
    ``(indices [N, K], values [N, K])`` of the new link.
  """
  num_slots = write_weights.shape[-1]
  write_values, write_indices = _top_k_normalised(write_weights, k, backend)
  sparse_write = jnp.zeros_like(write_weights).at[write_indices].add(
      write_values)
  precedence_values, precedence_indices = _top_k_normalised(prev_precedence,
                                                            k, backend)

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
  values, chosen = sorting.top_k(values, k, backend=backend)
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


# The kernels' operands, in the order csrc/sparse_link.cc takes them.
class UpdateInputs(NamedTuple):
  indices: jax.Array
  values: jax.Array
  precedence: jax.Array
  write_weights: jax.Array


class UpdateOutputs(NamedTuple):
  indices: jax.Array
  values: jax.Array


class ReadOutInputs(NamedTuple):
  indices: jax.Array
  values: jax.Array
  prev_read_weights: jax.Array
  content: jax.Array
  read_modes: jax.Array
  memory: jax.Array


class ReadOutOutputs(NamedTuple):
  read_weights: jax.Array
  read_words: jax.Array


# Trailing dimensions of each operand; leading (batch, head) axes are shared.
UPDATE_DIMS = UpdateInputs(indices=("N", "K"), values=("N", "K"),
                           precedence=("N",), write_weights=("N",))
READ_OUT_DIMS = ReadOutInputs(
    indices=("H", "N", "K"), values=("H", "N", "K"), prev_read_weights=(
        "R", "N"), content=("R", "N"), read_modes=("R", "M"),
    memory=("N", "W"))


def _check_k(where: str, sizes):
  k, n = sizes["K"][0], sizes["N"][0]
  if not 1 <= k <= n:
    raise ValueError(f"{where}: K = {k} (from {sizes['K'][1]}) must be in "
                     f"[1, N = {n}]")


def _check_k_and_read_modes(where: str, sizes):
  """:func:`_check_k`, and ``M = 1 + 2H`` read modes."""
  _check_k(where, sizes)
  operands.require(where, "M", sizes, 1 + 2 * sizes["H"][0],
                   "1 + 2H (read modes: backward × H, content, forward × H)")


def check_update_operands(args: UpdateInputs, dtypes: bool = True):
  """``ValueError`` unless the update's operands fit together."""
  where = "sparse link update"
  sizes = operands.check(where, UPDATE_DIMS._asdict(), args._asdict(),
                         integer=("indices",), dtypes=dtypes)
  _check_k(where, sizes)


def check_read_out_operands(args: ReadOutInputs, dtypes: bool = True):
  """``ValueError`` unless the read-out's operands fit together."""
  where = "sparse link read-out"
  sizes = operands.check(where, READ_OUT_DIMS._asdict(), args._asdict(),
                         integer=("indices",), dtypes=dtypes)
  _check_k_and_read_modes(where, sizes)


def _float0_like(x: jax.Array) -> np.ndarray:
  return np.zeros(x.shape, jax.dtypes.float0)


def _like(x: jax.Array) -> jax.ShapeDtypeStruct:
  return jax.ShapeDtypeStruct(x.shape, x.dtype)


@jax.custom_vjp
def _update_kernel(indices, values, precedence, write_weights):
  args = UpdateInputs(indices, values, precedence, write_weights)
  outputs = UpdateOutputs(jax.ShapeDtypeStruct(indices.shape, jnp.int32),
                          _like(values))
  return tuple(jax.ffi.ffi_call(
      backends.target(backends.SPARSE_LINK_UPDATE, values.dtype),
      tuple(outputs), vmap_method="broadcast_all")(*args))


def _update_kernel_fwd(*args):
  return _update_kernel(*args), UpdateInputs(*args)


def _update_kernel_bwd(args: UpdateInputs, cotangents):
  # Operands: the inputs, then the new values' cotangent; results: the
  # cotangents of the float inputs.
  grads = jax.ffi.ffi_call(
      backends.target(backends.SPARSE_LINK_UPDATE_VJP, args.values.dtype),
      tuple(_like(x) for x in args[1:]),
      vmap_method="broadcast_all")(*args, UpdateOutputs(*cotangents).values)
  return (_float0_like(args.indices), *grads)


_update_kernel.defvjp(_update_kernel_fwd, _update_kernel_bwd)


def update(indices: jax.Array, values: jax.Array, precedence: jax.Array,
           write_weights: jax.Array, backend: str = "auto"
           ) -> Tuple[jax.Array, jax.Array]:
  """:func:`link_update` for every leading (batch, head) axis.

  Args:
    indices: ``[..., N, K]`` int32.
    values: ``[..., N, K]``.
    precedence: ``[..., N]``, the previous step's.
    write_weights: ``[..., N]``, this step's.
    backend: ``"xla"`` keeps to XLA operations on every platform; otherwise
      the CPU kernel runs on a CPU (:mod:`dnc_jax.backend`).
  Returns:
    ``(indices, values)`` of the new link, ``[..., N, K]``.
  Raises:
    ValueError: when the operands' shapes or dtypes do not fit together.
  """
  args = UpdateInputs(indices, values, precedence, write_weights)
  use = backends.use_kernels(backend, *args[1:])
  check_update_operands(args, dtypes=use)
  k = indices.shape[-1]

  def xla(indices, values, precedence, write_weights):
    step = batched(functools.partial(link_update, k=k, backend=backend),
                   indices.ndim - 2)
    return step(indices, values, precedence, write_weights)

  return tuple(backends.dispatch(backend, _update_kernel, xla, *args,
                                 floats=args[1:]))


def _read_out_xla(indices, values, prev_read_weights, content, read_modes,
                  memory):
  forward, backward = directional_weights(indices, values, prev_read_weights)
  read_weights = addressing.read_weights(content, forward, backward,
                                         read_modes)
  return read_weights, addressing.read_words(read_weights, memory)


@jax.custom_vjp
def _read_out_kernel(indices, values, prev_read_weights, content, read_modes,
                     memory):
  args = ReadOutInputs(indices, values, prev_read_weights, content,
                       read_modes, memory)
  outputs = ReadOutOutputs(
      _like(content), jax.ShapeDtypeStruct(
          content.shape[:-1] + memory.shape[-1:], memory.dtype))
  return tuple(jax.ffi.ffi_call(
      backends.target(backends.SPARSE_READ_OUT, values.dtype),
      tuple(outputs), vmap_method="broadcast_all")(*args))


def _read_out_kernel_fwd(*args):
  return _read_out_kernel(*args), ReadOutInputs(*args)


def _read_out_kernel_bwd(args: ReadOutInputs, cotangents):
  # Operands: the inputs, then the outputs' cotangents; results: the
  # cotangents of the float inputs.
  grads = jax.ffi.ffi_call(
      backends.target(backends.SPARSE_READ_OUT_VJP, args.values.dtype),
      tuple(_like(x) for x in args[1:]),
      vmap_method="broadcast_all")(*args, *ReadOutOutputs(*cotangents))
  return (_float0_like(args.indices), *grads)


_read_out_kernel.defvjp(_read_out_kernel_fwd, _read_out_kernel_bwd)


def read_out(indices: jax.Array, values: jax.Array,
             prev_read_weights: jax.Array, content: jax.Array,
             read_modes: jax.Array, memory: jax.Array,
             backend: str = "auto") -> Tuple[jax.Array, jax.Array]:
  """Read weights and read words through the indexed link (§3 steps 8-10).

  The directional reads (:func:`directional_weights`) mixed with the
  content weights by the read modes (:func:`dnc_jax.addressing.
  read_weights`), and the words they read.

  Args:
    indices, values: the new link, ``[..., H, N, K]``.
    prev_read_weights: ``[..., R, N]``.
    content: ``[..., R, N]`` content read weights.
    read_modes: ``[..., R, 1 + 2H]`` (backward × H, content, forward × H).
    memory: ``[..., N, W]``, after this step's write.
    backend: ``"xla"`` keeps to XLA operations on every platform; otherwise
      the CPU kernel runs on a CPU (:mod:`dnc_jax.backend`).
  Returns:
    ``(read_weights [..., R, N], read_words [..., R, W])``.
  Raises:
    ValueError: when the operands' shapes or dtypes do not fit together.
  """
  args = ReadOutInputs(indices, values, prev_read_weights, content,
                       read_modes, memory)
  use = backends.use_kernels(backend, *args[1:])
  check_read_out_operands(args, dtypes=use)
  return tuple(backends.dispatch(backend, _read_out_kernel, _read_out_xla,
                                 *args, floats=args[1:]))


# The whole step as one kernel pair (DncSparseLinkStep[Vjp]): the update of
# every head's link and the read-out through the new links, in one pass per
# example. Its operands are the update's, then the read-out's other ones.
class StepInputs(NamedTuple):
  indices: jax.Array
  values: jax.Array
  precedence: jax.Array
  write_weights: jax.Array
  prev_read_weights: jax.Array
  content: jax.Array
  read_modes: jax.Array
  memory: jax.Array


class StepOutputs(NamedTuple):
  indices: jax.Array
  values: jax.Array
  read_weights: jax.Array
  read_words: jax.Array


class StepResiduals(NamedTuple):
  """What the forward kernel leaves for its VJP besides its outputs."""
  chosen: jax.Array  # [..., H, N, K] int32: each new pair's candidate
  tops: jax.Array  # [..., H, 2, K] int32: top-K of write weights, precedence


STEP_DIMS = StepInputs(
    indices=("H", "N", "K"), values=("H", "N", "K"), precedence=("H", "N"),
    write_weights=("H", "N"), prev_read_weights=("R", "N"),
    content=("R", "N"), read_modes=("R", "M"), memory=("N", "W"))


def check_step_operands(args: StepInputs, dtypes: bool = True):
  """``ValueError`` unless the step's operands fit together."""
  where = "sparse link step"
  sizes = operands.check(where, STEP_DIMS._asdict(), args._asdict(),
                         integer=("indices",), dtypes=dtypes)
  _check_k_and_read_modes(where, sizes)


def _step_xla(indices, values, precedence, write_weights, prev_read_weights,
              content, read_modes, memory, *, backend: str):
  update_one = functools.partial(link_update, k=indices.shape[-1],
                                 backend=backend)
  indices, values = batched(update_one, indices.ndim - 2)(
      indices, values, precedence, write_weights)
  return (indices, values, *_read_out_xla(indices, values, prev_read_weights,
                                          content, read_modes, memory))


def _step_call(args: StepInputs):
  """The forward kernel: ``StepOutputs`` then ``StepResiduals``."""
  *batch, num_writes, _, k = args.indices.shape
  int32 = functools.partial(jax.ShapeDtypeStruct, dtype=jnp.int32)
  outputs = StepOutputs(
      int32(args.indices.shape), _like(args.values), _like(args.content),
      jax.ShapeDtypeStruct(args.content.shape[:-1] + args.memory.shape[-1:],
                           args.memory.dtype))
  residuals = StepResiduals(int32(args.indices.shape),
                            int32((*batch, num_writes, 2, k)))
  results = jax.ffi.ffi_call(
      backends.target(backends.SPARSE_LINK_STEP, args.values.dtype),
      (*outputs, *residuals), vmap_method="broadcast_all")(*args)
  return StepOutputs(*results[:4]), StepResiduals(*results[4:])


@jax.custom_vjp
def _step_kernel(*args):
  return tuple(_step_call(StepInputs(*args))[0])


def _step_kernel_fwd(*args):
  args = StepInputs(*args)
  outputs, residuals = _step_call(args)
  # The VJP takes the new link as computed (it re-reads f, b and the read
  # weights from it: cheaper than keeping them, docs/kernels.md).
  return tuple(outputs), (args, outputs.indices, outputs.values, residuals)


def _step_kernel_bwd(saved, cotangents):
  # Operands: the inputs, the new link, the residuals, then the cotangents
  # of the new values, read weights and read words; results: the
  # cotangents of the float inputs. The update is not redone.
  args, new_indices, new_values, residuals = saved
  cotangents = StepOutputs(*cotangents)
  grads = jax.ffi.ffi_call(
      backends.target(backends.SPARSE_LINK_STEP_VJP, args.values.dtype),
      tuple(_like(x) for x in args[1:]), vmap_method="broadcast_all")(
          *args, new_indices, new_values, *residuals, cotangents.values,
          cotangents.read_weights, cotangents.read_words)
  return (_float0_like(args.indices), *grads)


_step_kernel.defvjp(_step_kernel_fwd, _step_kernel_bwd)


def link_step(indices: jax.Array, values: jax.Array, precedence: jax.Array,
              write_weights: jax.Array, prev_read_weights: jax.Array,
              content: jax.Array, read_modes: jax.Array, memory: jax.Array,
              backend: str = "auto") -> StepOutputs:
  """:func:`update` then :func:`read_out` through the new link, as one call.

  Unless ``backend="xla"`` (or ``"pallas"``), one CPU kernel does both in
  one pass per example, and its VJP kernel both backwards, from residuals
  the forward saved (``csrc/sparse_link.cc``).

  Args:
    indices, values: the link, ``[..., H, N, K]``.
    precedence: ``[..., H, N]``, the previous step's.
    write_weights: ``[..., H, N]``, this step's.
    prev_read_weights: ``[..., R, N]``.
    content: ``[..., R, N]`` content read weights.
    read_modes: ``[..., R, 1 + 2H]`` (backward × H, content, forward × H).
    memory: ``[..., N, W]``, after this step's write.
    backend: as for :func:`update`.
  Returns:
    ``StepOutputs(indices, values, read_weights, read_words)``: the new
    link ``[..., H, N, K]``, ``[..., R, N]`` and ``[..., R, W]``.
  Raises:
    ValueError: when the operands' shapes or dtypes do not fit together.
  """
  args = StepInputs(indices, values, precedence, write_weights,
                    prev_read_weights, content, read_modes, memory)
  use = backends.use_kernels(backend, *args[1:])
  check_step_operands(args, dtypes=use)
  return StepOutputs(*backends.dispatch(
      backend, _step_kernel, functools.partial(_step_xla, backend=backend),
      *args, floats=args[1:]))


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


# The link-kind interface of dnc_jax.links.

def initial_state(batch_shape: Tuple[int, ...], num_writes: int,
                  memory_size: int, k: Optional[int], dtype
                  ) -> SparseTemporalLinkageState:
  """No links yet: ``K`` zero-valued pairs per row, ``[*B, H, N, K]``."""
  shape = (*batch_shape, num_writes, memory_size, k)
  return SparseTemporalLinkageState(
      link_indices=jnp.zeros(shape, jnp.int32),
      link_values=jnp.zeros(shape, dtype),
      precedence_weights=jnp.zeros((*batch_shape, num_writes, memory_size),
                                   dtype))


LINKAGE_DIMS = {"link_indices": ("H", "N", "K"),
                "link_values": ("H", "N", "K"),
                "precedence_weights": ("H", "N")}


def check_state(where: str, linkage, sizes, k: Optional[int]):
  """``ValueError`` unless ``linkage`` is an indexed link fitting ``sizes``."""
  if not isinstance(linkage, SparseTemporalLinkageState):
    raise ValueError(f"{where}: the link kind is 'indexed' (N×K pairs) but "
                     f"the state's linkage is {type(linkage).__name__}")
  sizes = operands.check(where, LINKAGE_DIMS, linkage._asdict(),
                         sizes=sizes, integer=("link_indices",),
                         dtypes=False)
  stored = sizes["K"][0]
  if k is not None and k != stored:
    raise ValueError(f"{where}: link_sparsity={k} does not match the indexed "
                     f"link state, which holds K={stored}")
  _check_k(where, sizes)


def step(linkage: SparseTemporalLinkageState, write_weights: jax.Array,
         prev_read_weights: jax.Array, content: jax.Array,
         read_modes: jax.Array, memory: jax.Array, *, k: Optional[int],
         backend: str):
  """The link update and the read-out; see :func:`dnc_jax.links.step`."""
  del k  # The state's last axis.
  precedence = addressing.precedence_update(linkage.precedence_weights,
                                            write_weights)
  indices, values, read_weights, read_words = link_step(
      linkage.link_indices, linkage.link_values, linkage.precedence_weights,
      write_weights, prev_read_weights, content, read_modes, memory,
      backend=backend)
  return (SparseTemporalLinkageState(indices, values, precedence),
          read_weights, read_words)


def dense_view(linkage: SparseTemporalLinkageState) -> jax.Array:
  """The ``[..., H, N, N]`` matrices the pairs hold."""
  fn = batched(to_dense, linkage.link_indices.ndim - 2)
  return fn(linkage.link_indices, linkage.link_values)
