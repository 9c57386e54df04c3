"""The dense link step as Pallas kernels, for GPUs (``docs/maths.md`` §3).

What it computes: exactly :func:`dnc_jax.addressing.link_step`, the ``O(N²)``
part of a dense-link memory step,

* ``L_t[i, j] = (1 − w[i] − w[j]) L_{t-1}[i, j] + w[i] p_{t-1}[j]``, with
  the diagonal ``L_t[i, i] = 0``;
* forward ``f[r] = L_t w^r_{t-1}`` and backward ``b[r] = L_tᵀ w^r_{t-1}``,

for ``prev_link [*B, H, N, N]``, ``prev_precedence [*B, H, N]``,
``write_weights [*B, H, N]`` and ``prev_read_weights [*B, R, N]``, returning
``(link [*B, H, N, N], forward [*B, R, H, N], backward [*B, R, H, N])``.

Why: on a GPU the step is bound by the traffic over the ``N × N`` link, and
the XLA composition may read it several times (the update, then each
contraction, unless XLA fuses them; its VJP more). Here the forward pass is one ``pallas_call``
that reads each tile of ``L_{t-1}`` once and writes the tile of ``L_t``,
accumulating the tile's share of ``f`` and ``b`` from the tile it just
computed, while it is in registers. The grid is batch × write heads ×
row tiles × column tiles; with one tile (``N <= block_size``) a program
reads the whole ``N × N`` block of its (batch, head) once, as the plain
design would. With several tiles each program writes its partial ``f``
(one per column tile) and ``b`` (one per row tile), and XLA sums the
``O(B·H·(N/T)·R·N)`` partials: Pallas on GPU has no ordered accumulation
across programs, and partial sums keep every program independent.

The VJP is hand-written (``jax.custom_vjp``) and keeps, as the XLA path's,
only the four inputs. **Its backward pass is a Pallas kernel too**: one
``pallas_call`` that reads each tile of ``L_{t-1}`` and of the link's
cotangent once, recomputes the tile of ``L_t``, writes the cotangent of
``L_{t-1}``, and emits per-tile partials of the cotangents of the read,
write and precedence weights, which XLA sums (over tiles and, for the read
weights, over write heads). The maths is that of
``addressing._link_step_bwd``.

Sizes: the Pallas Triton lowering wants power-of-two block sizes, so ``N``
and ``R`` are zero-padded to the next power of two around the kernels (a
no-op at power-of-two sizes; the padded rows and columns of the link stay
zero and the padded outputs are dropped). The same padding runs in
interpret mode, so the CPU tests exercise it.

Where it runs: compiled (Triton) on a GPU. On the CPU Pallas runs only in
interpret mode, which evaluates the kernel body grid step by grid step in
XLA: correct, used by the tests, and slow. :func:`link_step` takes
``interpret`` explicitly; :func:`link_step_for_platform` picks it from the
platform the computation is lowered for (what ``memory_backend="pallas"``
uses). Its speed on a GPU against the XLA path has not been measured yet:
``benchmarks/gpu_link.py`` measures it (``docs/kernels.md``).
"""

from __future__ import annotations

import functools
import math
from typing import Optional, Tuple

import jax
import jax.numpy as jnp
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as pltriton

from dnc_jax import operands

# Operands of one link step, named as in addressing.link_step.
LINK_STEP_DIMS = {
    "prev_link": ("H", "N", "N"),
    "prev_precedence": ("H", "N"),
    "write_weights": ("H", "N"),
    "prev_read_weights": ("R", "N"),
}

# Tile side on the GPU: the backward kernel holds about four T × T tiles at
# once; at T = 64 each is 32 float32 values per thread of 4 warps (128
# threads), about 128 registers for the four, within the 255 a thread may
# use. Not tuned (no GPU was available to us); benchmarks/gpu_link.py takes
# --block to try others.
DEFAULT_BLOCK_SIZE = 64


# The Triton lowering, chosen explicitly (jax's GPU default may be Mosaic
# GPU, which these element-wise tile kernels are not written for). Ignored
# in interpret mode.
_COMPILER_PARAMS = pltriton.CompilerParams(num_warps=4, num_stages=1)


def _next_power_of_two(n: int) -> int:
  return 1 << max(0, (n - 1).bit_length())


def check_operands(prev_link, prev_precedence, write_weights,
                   prev_read_weights, where: str = "pallas link_step"):
  """``ValueError`` naming the operand unless the shapes fit together.

  All four must share one float dtype and the same leading (batch) axes.
  Returns the bound sizes (see :func:`dnc_jax.operands.check`).
  """
  arrays = {"prev_link": prev_link, "prev_precedence": prev_precedence,
            "write_weights": write_weights,
            "prev_read_weights": prev_read_weights}
  for name, x in arrays.items():
    if not hasattr(x, "shape") or not hasattr(x, "dtype"):
      raise ValueError(f"{where}: {name} must be an array, got "
                       f"{type(x).__name__}")
  return operands.check(where, LINK_STEP_DIMS, arrays)


def link_step(prev_link: jax.Array, prev_precedence: jax.Array,
              write_weights: jax.Array, prev_read_weights: jax.Array, *,
              interpret: bool,
              block_size: Optional[int] = None
              ) -> Tuple[jax.Array, jax.Array, jax.Array]:
  """:func:`dnc_jax.addressing.link_step` by Pallas kernels.

  Args:
    prev_link: ``[*B, H, N, N]``.
    prev_precedence: ``[*B, H, N]`` (of the previous step).
    write_weights: ``[*B, H, N]``.
    prev_read_weights: ``[*B, R, N]``.
    interpret: run the kernels in Pallas's interpret mode (any platform;
      the only mode on a CPU) rather than compiled (GPU).
    block_size: tile side ``T`` (a power of two; default
      :data:`DEFAULT_BLOCK_SIZE`); the tile is ``min(T, N rounded up to a
      power of two)``.
  Returns:
    ``(link [*B, H, N, N], forward [*B, R, H, N], backward [*B, R, H, N])``;
    differentiable (a Pallas backward kernel, see the module docstring).
  Raises:
    ValueError: naming the operand whose shape or dtype does not fit, or
      for a bad ``block_size``.
  """
  sizes = check_operands(prev_link, prev_precedence, write_weights,
                         prev_read_weights)
  if not isinstance(interpret, bool):
    raise ValueError(f"interpret must be a bool, got {interpret!r}")
  block = DEFAULT_BLOCK_SIZE if block_size is None else block_size
  if (isinstance(block, bool) or not isinstance(block, int) or block < 1
      or block & (block - 1)):
    raise ValueError(f"block_size must be a power of two >= 1, got "
                     f"{block_size!r}")
  lead = sizes["..."][0]
  h, n, r = sizes["H"][0], sizes["N"][0], sizes["R"][0]
  flat = (math.prod(lead),)  # The kernels take one batch axis.
  link, forward, backward = _link_step(
      jnp.reshape(prev_link, flat + (h, n, n)),
      jnp.reshape(prev_precedence, flat + (h, n)),
      jnp.reshape(write_weights, flat + (h, n)),
      jnp.reshape(prev_read_weights, flat + (r, n)),
      interpret, min(block, _next_power_of_two(n)))
  return (link.reshape(lead + (h, n, n)), forward.reshape(lead + (r, h, n)),
          backward.reshape(lead + (r, h, n)))


def link_step_for_platform(prev_link, prev_precedence, write_weights,
                           prev_read_weights):
  """:func:`link_step`, compiled on a GPU, in interpret mode elsewhere.

  The choice is made when the program is lowered, for the platform it is
  lowered for (``jax.lax.platform_dependent``), not from
  ``jax.default_backend()`` at trace time: a function traced once and
  placed on a CPU device of a GPU machine (or exported for another
  platform) gets the branch of where it runs. Both branches are traced;
  only the chosen one is lowered, so the compiled kernel is never lowered
  for the CPU.
  """
  args = (prev_link, prev_precedence, write_weights, prev_read_weights)
  check_operands(*args)
  compiled = functools.partial(link_step, interpret=False)
  interpreted = functools.partial(link_step, interpret=True)
  return jax.lax.platform_dependent(*args, cuda=compiled, rocm=compiled,
                                    default=interpreted)


# ---------------------------------------------------------------------------
# The kernels. Each program handles tile (i, j) of the link of batch b and
# write head h; refs arrive with the batch and head axes squeezed away.


def _tile_masks(block: int):
  """Row and column indices of tile (i, j) of the link, each ``[T, T]``."""
  rows = (pl.program_id(2) * block
          + jax.lax.broadcasted_iota(jnp.int32, (block, block), 0))
  cols = (pl.program_id(3) * block
          + jax.lax.broadcasted_iota(jnp.int32, (block, block), 1))
  return rows, cols


def _new_link_tile(prev_link, w_rows, w_cols, p_cols, block: int):
  rows, cols = _tile_masks(block)
  w_i, w_j = w_rows[:, None], w_cols[None, :]
  link = (1.0 - w_i - w_j) * prev_link + w_i * p_cols[None, :]
  return jnp.where(rows == cols, jnp.zeros((), link.dtype), link)


def _forward_kernel(prev_link_ref, prec_cols_ref, w_rows_ref, w_cols_ref,
                    read_rows_ref, read_cols_ref,
                    link_ref, forward_ref, backward_ref, *, block: int,
                    num_reads: int):
  link = _new_link_tile(prev_link_ref[...], w_rows_ref[...],
                        w_cols_ref[...], prec_cols_ref[...], block)
  link_ref[...] = link
  # R is small: one reduction over the tile in registers per read head
  # (no dot: Triton's needs every dimension >= 16).
  for r in range(num_reads):
    forward_ref[r, :] = jnp.sum(link * read_cols_ref[r, :][None, :], axis=1)
    backward_ref[r, :] = jnp.sum(link * read_rows_ref[r, :][:, None], axis=0)


def _backward_kernel(prev_link_ref, prec_cols_ref, w_rows_ref, w_cols_ref,
                     read_rows_ref, read_cols_ref, g_link_ref,
                     g_fwd_rows_ref, g_bwd_cols_ref,
                     g_prev_link_ref, g_read_rows_ref, g_read_cols_ref,
                     g_write_rows_ref, g_write_cols_ref, g_prec_cols_ref, *,
                     block: int, num_reads: int):
  prev_link = prev_link_ref[...]
  w_rows, w_cols = w_rows_ref[...], w_cols_ref[...]
  p_cols = prec_cols_ref[...]
  link = _new_link_tile(prev_link, w_rows, w_cols, p_cols, block)
  # Total cotangent of the new link's tile: its own, plus per read head
  # g_forward[r, i] read[r, j] + read[r, i] g_backward[r, j].
  total = g_link_ref[...]
  for r in range(num_reads):
    total = (total
             + g_fwd_rows_ref[r, :][:, None] * read_cols_ref[r, :][None, :]
             + read_rows_ref[r, :][:, None] * g_bwd_cols_ref[r, :][None, :])
  rows, cols = _tile_masks(block)
  total = jnp.where(rows == cols, jnp.zeros((), total.dtype), total)
  g_prev_link_ref[...] = (1.0 - w_rows[:, None] - w_cols[None, :]) * total
  for r in range(num_reads):
    # f = L read: d read[r, j] = Σ_i L[i, j] g_f[r, i] (columns);
    # b = Lᵀ read: d read[r, i] = Σ_j L[i, j] g_b[r, j] (rows).
    g_read_cols_ref[r, :] = jnp.sum(link * g_fwd_rows_ref[r, :][:, None],
                                    axis=0)
    g_read_rows_ref[r, :] = jnp.sum(link * g_bwd_cols_ref[r, :][None, :],
                                    axis=1)
  total_times_link = total * prev_link
  g_write_rows_ref[...] = (jnp.sum(total * p_cols[None, :], axis=1)
                           - jnp.sum(total_times_link, axis=1))
  g_write_cols_ref[...] = -jnp.sum(total_times_link, axis=0)
  g_prec_cols_ref[...] = jnp.sum(total * w_rows[:, None], axis=0)


def _pad_to(x, axis_sizes):
  """Zero-pads ``x`` at the end of the given axes to the given sizes."""
  widths = [(0, 0)] * x.ndim
  for axis, size in axis_sizes.items():
    widths[axis] = (0, size - x.shape[axis])
  if all(w == (0, 0) for w in widths):
    return x
  return jnp.pad(x, widths)


class _Layout:
  """Padded sizes, grid and block specs shared by both kernels."""

  def __init__(self, batch: int, heads: int, n: int, reads: int, block: int):
    self.n, self.reads = n, reads
    self.np_ = _next_power_of_two(n)
    self.rp = _next_power_of_two(reads)
    self.block = block
    self.tiles = self.np_ // block
    self.grid = (batch, heads, self.tiles, self.tiles)
    t, rp = block, self.rp
    # [B, H, N, N] tiles.
    self.square = pl.BlockSpec((None, None, t, t),
                               lambda b, h, i, j: (b, h, i, j))
    # [B, H, N] pieces for the tile's rows / columns.
    self.rows = pl.BlockSpec((None, None, t), lambda b, h, i, j: (b, h, i))
    self.cols = pl.BlockSpec((None, None, t), lambda b, h, i, j: (b, h, j))
    # [B, R, N] read weights for the rows / columns (all heads share them).
    self.read_rows = pl.BlockSpec((None, rp, t),
                                  lambda b, h, i, j: (b, 0, i))
    self.read_cols = pl.BlockSpec((None, rp, t),
                                  lambda b, h, i, j: (b, 0, j))
    # [B, H, R, N] per-head weightings (cotangents), rows / columns.
    self.head_rows = pl.BlockSpec((None, None, rp, t),
                                  lambda b, h, i, j: (b, h, 0, i))
    self.head_cols = pl.BlockSpec((None, None, rp, t),
                                  lambda b, h, i, j: (b, h, 0, j))
    # Partials: [B, H, tiles, R, N] of rows (one per column tile j) and of
    # columns (one per row tile i); [B, H, tiles, N] likewise.
    self.part_rows = pl.BlockSpec((None, None, None, rp, t),
                                  lambda b, h, i, j: (b, h, j, 0, i))
    self.part_cols = pl.BlockSpec((None, None, None, rp, t),
                                  lambda b, h, i, j: (b, h, i, 0, j))
    self.vec_rows = pl.BlockSpec((None, None, None, t),
                                 lambda b, h, i, j: (b, h, j, i))
    self.vec_cols = pl.BlockSpec((None, None, None, t),
                                 lambda b, h, i, j: (b, h, i, j))
    self.batch, self.heads = batch, heads

  def shape(self, kind: str, dtype):
    b, h, np_, rp = self.batch, self.heads, self.np_, self.rp
    shapes = {"square": (b, h, np_, np_), "parts": (b, h, self.tiles, rp, np_),
              "vec_parts": (b, h, self.tiles, np_)}
    return jax.ShapeDtypeStruct(shapes[kind], dtype)

  def pad_inputs(self, prev_link, prev_precedence, write_weights,
                 prev_read_weights):
    np_, rp = self.np_, self.rp
    return (_pad_to(prev_link, {2: np_, 3: np_}),
            _pad_to(prev_precedence, {2: np_}),
            _pad_to(write_weights, {2: np_}),
            _pad_to(prev_read_weights, {1: rp, 2: np_}))


def _laid_out(prev_link, prev_precedence, write_weights, prev_read_weights,
              block: int):
  """The :class:`_Layout` of these operands and the operands padded to it
  (what both kernels start from)."""
  batch, heads, n = prev_precedence.shape
  lay = _Layout(batch, heads, n, prev_read_weights.shape[1], block)
  return lay, lay.pad_inputs(prev_link, prev_precedence, write_weights,
                             prev_read_weights)


def _forward(prev_link, prev_precedence, write_weights, prev_read_weights,
             interpret: bool, block: int):
  lay, (link, prec, write, read) = _laid_out(
      prev_link, prev_precedence, write_weights, prev_read_weights, block)
  n, reads, dtype = lay.n, lay.reads, link.dtype
  kernel = functools.partial(_forward_kernel, block=block, num_reads=reads)
  new_link, fwd_parts, bwd_parts = pl.pallas_call(
      kernel,
      grid=lay.grid,
      in_specs=[lay.square, lay.cols, lay.rows, lay.cols, lay.read_rows,
                lay.read_cols],
      out_specs=[lay.square, lay.part_rows, lay.part_cols],
      out_shape=[lay.shape("square", dtype), lay.shape("parts", dtype),
                 lay.shape("parts", dtype)],
      interpret=interpret,
      compiler_params=_COMPILER_PARAMS,
      name="dnc_link_step_forward",
  )(link, prec, write, write, read, read)
  # Partials [B, H, tiles, Rp, Np] -> [B, R, H, N].
  forward = jnp.swapaxes(jnp.sum(fwd_parts, axis=2), 1, 2)[:, :reads, :, :n]
  backward = jnp.swapaxes(jnp.sum(bwd_parts, axis=2), 1, 2)[:, :reads, :, :n]
  return new_link[:, :, :n, :n], forward, backward


@functools.partial(jax.custom_vjp, nondiff_argnums=(4, 5))
def _link_step(prev_link, prev_precedence, write_weights, prev_read_weights,
               interpret, block):
  return _forward(prev_link, prev_precedence, write_weights,
                  prev_read_weights, interpret, block)


def _link_step_fwd(prev_link, prev_precedence, write_weights,
                   prev_read_weights, interpret, block):
  outputs = _forward(prev_link, prev_precedence, write_weights,
                     prev_read_weights, interpret, block)
  return outputs, (prev_link, prev_precedence, write_weights,
                   prev_read_weights)


def _link_step_bwd(interpret, block, residuals, cotangents):
  prev_link, prev_precedence, write_weights, prev_read_weights = residuals
  g_link, g_forward, g_backward = cotangents
  lay, (link, prec, write, read) = _laid_out(
      prev_link, prev_precedence, write_weights, prev_read_weights, block)
  n, reads, dtype = lay.n, lay.reads, link.dtype
  g_link = _pad_to(g_link.astype(dtype), {2: lay.np_, 3: lay.np_})
  # [B, R, H, N] -> [B, H, Rp, Np].
  g_forward = _pad_to(jnp.swapaxes(g_forward.astype(dtype), 1, 2),
                      {2: lay.rp, 3: lay.np_})
  g_backward = _pad_to(jnp.swapaxes(g_backward.astype(dtype), 1, 2),
                       {2: lay.rp, 3: lay.np_})
  kernel = functools.partial(_backward_kernel, block=block, num_reads=reads)
  (g_prev_link, g_read_rows, g_read_cols, g_write_rows, g_write_cols,
   g_prec_cols) = pl.pallas_call(
       kernel,
       grid=lay.grid,
       in_specs=[lay.square, lay.cols, lay.rows, lay.cols, lay.read_rows,
                 lay.read_cols, lay.square, lay.head_rows, lay.head_cols],
       out_specs=[lay.square, lay.part_rows, lay.part_cols, lay.vec_rows,
                  lay.vec_cols, lay.vec_cols],
       out_shape=[lay.shape("square", dtype), lay.shape("parts", dtype),
                  lay.shape("parts", dtype), lay.shape("vec_parts", dtype),
                  lay.shape("vec_parts", dtype),
                  lay.shape("vec_parts", dtype)],
       interpret=interpret,
       compiler_params=_COMPILER_PARAMS,
       name="dnc_link_step_backward",
   )(link, prec, write, write, read, read, g_link, g_forward, g_backward)
  # Sum the partials over tiles, and the read weights' over write heads.
  g_read = jnp.sum(g_read_rows + g_read_cols, axis=(1, 2))[:, :reads, :n]
  g_write = jnp.sum(g_write_rows + g_write_cols, axis=2)[:, :, :n]
  g_prec = jnp.sum(g_prec_cols, axis=2)[:, :, :n]
  return (g_prev_link[:, :, :n, :n].astype(prev_link.dtype),
          g_prec.astype(prev_precedence.dtype),
          g_write.astype(write_weights.dtype),
          g_read.astype(prev_read_weights.dtype))


_link_step.defvjp(_link_step_fwd, _link_step_bwd)
