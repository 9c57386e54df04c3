"""The interface vector: splitting it into head parameters and squashing them."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from dnc_jax.config import DNCConfig
from dnc_jax.types import MemoryInterface


def oneplus(x: jax.Array) -> jax.Array:
  """``1 + softplus(x)``: strengths of at least 1, as in the paper."""
  return 1.0 + jax.nn.softplus(x)


def _squash_strengths(x: jax.Array, squash: str) -> jax.Array:
  return oneplus(x) if squash == "oneplus" else jax.nn.softplus(x)


def parse_interface(vector: jax.Array, config: DNCConfig) -> MemoryInterface:
  """Split and squash a raw interface vector (``docs/maths.md`` §2).

  Args:
    vector: ``[B, config.interface_size]`` raw (pre-activation) values.
    config: gives ``R``, ``H``, ``W``, the strength squash and whether read
      modes are present.
  Returns:
    The :class:`MemoryInterface`, keys ``[B, ·, W]``, gates ``[B, ·]``, read
    modes ``[B, R, 1 + 2H]`` softmax-normalised (``None`` without links);
    with the options of ``docs/maths.md`` §8, masks ``[B, R, W]`` and
    ``[B, H, W]`` (``σ``) and link sharpness ``[B, R, 2H]`` (``oneplus``),
    which follow everything else in that order.
  """
  if vector.shape[-1] != config.interface_size:
    raise ValueError(
        f"interface vector has width {vector.shape[-1]}, expected "
        f"config.interface_size = {config.interface_size}")
  r, h, w = config.num_reads, config.num_writes, config.word_size
  batch = vector.shape[:-1]
  sizes = [r * w, r, h * w, h, h * w, h * w, r, h, h]
  if config.use_temporal_links:
    sizes.append(r * config.num_read_modes)
  if config.content_masking:
    sizes += [r * w, h * w]
  if config.link_sharpness:
    sizes.append(r * 2 * h)
  splits = np.cumsum(sizes)[:-1].tolist()
  parts = jnp.split(vector, splits, axis=-1)
  (read_keys, read_strengths, write_keys, write_strengths, erase, values,
   free, allocation, write) = parts[:9]
  rest = parts[9:]
  read_modes = read_masks = write_masks = link_sharpness = None
  if config.use_temporal_links:
    read_modes = jax.nn.softmax(
        rest.pop(0).reshape(*batch, r, config.num_read_modes), axis=-1)
  if config.content_masking:
    read_masks = jax.nn.sigmoid(rest.pop(0).reshape(*batch, r, w))
    write_masks = jax.nn.sigmoid(rest.pop(0).reshape(*batch, h, w))
  if config.link_sharpness:
    link_sharpness = oneplus(rest.pop(0).reshape(*batch, r, 2 * h))
  squash = config.strength_squash
  return MemoryInterface(
      read_keys=read_keys.reshape(*batch, r, w),
      read_strengths=_squash_strengths(read_strengths, squash),
      write_keys=write_keys.reshape(*batch, h, w),
      write_strengths=_squash_strengths(write_strengths, squash),
      erase_vectors=jax.nn.sigmoid(erase.reshape(*batch, h, w)),
      write_vectors=values.reshape(*batch, h, w),
      free_gates=jax.nn.sigmoid(free),
      allocation_gates=jax.nn.sigmoid(allocation),
      write_gates=jax.nn.sigmoid(write),
      read_modes=read_modes,
      read_masks=read_masks,
      write_masks=write_masks,
      link_sharpness=link_sharpness,
  )
