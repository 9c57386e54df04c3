"""Pure addressing maths of the DNC (``docs/maths.md`` §2-4).

Plain functions of arrays: no Haiku, no state objects. Every function takes
leading batch axes written ``B`` below (any number of them, including none,
unless a docstring says otherwise); ``N`` memory slots, ``W`` word size, ``R``
read heads, ``H`` write heads.
"""

from __future__ import annotations

from typing import Tuple

import jax
import jax.numpy as jnp

from dnc_jax import sorting

# Keeps norms differentiable at the all-zero memory of t = 0 and the cosine
# finite; the original release's value.
NORM_EPSILON = 1e-6
# Usage is clipped into [ALLOCATION_EPSILON, 1] before the allocation's
# exclusive cumulative product; the original release's value.
ALLOCATION_EPSILON = 1e-6


def product_over_axis(x: jax.Array, axis: int) -> jax.Array:
  """``Π`` over a short static ``axis`` (heads), as a chain of multiplies.

  Zero-safe (no division) and, unlike ``jnp.prod``, its gradient is a few
  fused element-wise products rather than a general reduce-product rule.
  """
  x = jnp.moveaxis(x, axis, 0)
  product = x[0]
  for factor in x[1:]:
    product = product * factor
  return product


def vector_norms(x: jax.Array, epsilon: float = NORM_EPSILON) -> jax.Array:
  """``sqrt(Σ x² + ε)`` over the last axis, keeping it: ``[..., D] -> [..., 1]``.

  Unlike ``jnp.linalg.norm``, its gradient is finite at ``x = 0``.
  """
  return jnp.sqrt(jnp.sum(x * x, axis=-1, keepdims=True) + epsilon)


def cosine_similarity(memory: jax.Array, keys: jax.Array,
                      epsilon: float = NORM_EPSILON) -> jax.Array:
  """``D(k, M[i]) = k·M[i] / (|k| |M[i]| + ε)``.

  Args:
    memory: ``[B, N, W]``.
    keys: ``[B, K, W]`` (``K`` heads).
  Returns:
    ``[B, K, N]``.
  """
  dot = jnp.einsum("...kw,...nw->...kn", keys, memory)
  norms = vector_norms(keys, epsilon) * jnp.swapaxes(
      vector_norms(memory, epsilon), -1, -2)
  return dot / (norms + epsilon)


def masked_cosine_similarity(memory: jax.Array, keys: jax.Array,
                             masks: jax.Array,
                             epsilon: float = NORM_EPSILON) -> jax.Array:
  """``D(k ∘ m, M[i] ∘ m)``, one mask per head (``docs/maths.md`` §8.1).

  Computed without forming the ``[B, K, N, W]`` masked memories:
  ``(k ∘ m)·(M[i] ∘ m) = Σ_w k_w m_w² M_iw`` and
  ``|M[i] ∘ m|² = Σ_w M_iw² m_w²``.

  Args:
    memory: ``[B, N, W]``.
    keys: ``[B, K, W]``.
    masks: ``[B, K, W]``.
  Returns:
    ``[B, K, N]``.
  """
  squared_masks = masks * masks
  dot = jnp.einsum("...kw,...nw->...kn", keys * squared_masks, memory)
  memory_norms = jnp.sqrt(
      jnp.einsum("...kw,...nw->...kn", squared_masks, memory * memory)
      + epsilon)
  norms = vector_norms(keys * masks, epsilon) * memory_norms
  return dot / (norms + epsilon)


def content_weights(memory: jax.Array, keys: jax.Array,
                    strengths: jax.Array, masks=None) -> jax.Array:
  """Content weighting ``C(M, k, β)[i] = softmax_i(β · D(k, M[i]))``.

  Args:
    memory: ``[B, N, W]``.
    keys: ``[B, K, W]``.
    strengths: ``[B, K]``, already squashed (positive).
    masks: ``None``, or ``[B, K, W]`` content masks: then
      ``C(M ∘ 1mᵀ, k ∘ m, β)`` (``docs/maths.md`` §8.1).
  Returns:
    ``[B, K, N]``, each row summing to 1.
  """
  if masks is None:
    similarity = cosine_similarity(memory, keys)
  else:
    similarity = masked_cosine_similarity(memory, keys, masks)
  return jax.nn.softmax(similarity * strengths[..., None], axis=-1)


def retention(free_gates: jax.Array, prev_read_weights: jax.Array) -> jax.Array:
  """Memory retention ``ψ = Π_i (1 − f^i w^{r,i}_{t-1})``.

  Args:
    free_gates: ``[B, R]``.
    prev_read_weights: ``[B, R, N]``.
  Returns:
    ``[B, N]``.
  """
  return product_over_axis(1.0 - free_gates[..., None] * prev_read_weights,
                           axis=-2)


def usage_update(prev_usage: jax.Array, prev_write_weights: jax.Array,
                 free_gates: jax.Array,
                 prev_read_weights: jax.Array) -> jax.Array:
  """Usage ``u_t = (u + w̄ − u ∘ w̄) ∘ ψ`` (``docs/maths.md`` §3, step 1).

  ``w̄ = 1 − Π_h (1 − w^{w,h}_{t-1})`` folds the write heads. No gradient flows
  into the previous write weights (as in the original release); it does flow
  into the free gates and the previous read weights.

  Args:
    prev_usage: ``[B, N]``.
    prev_write_weights: ``[B, H, N]``.
    free_gates: ``[B, R]``.
    prev_read_weights: ``[B, R, N]``.
  Returns:
    ``[B, N]``.
  """
  prev_write_weights = jax.lax.stop_gradient(prev_write_weights)
  written = 1.0 - product_over_axis(1.0 - prev_write_weights, axis=-2)
  usage = prev_usage + written - prev_usage * written
  return usage * retention(free_gates, prev_read_weights)


def allocation_weights(usage: jax.Array,
                       backend: str = "auto") -> jax.Array:
  """Allocation ``a[φ_j] = (1 − u[φ_j]) Π_{i<j} u[φ_i]``, φ sorting usage up.

  The sort order is a constant for differentiation; gradients flow through
  the usage values. Usage is first clipped into ``[ε, 1]`` so the exclusive
  cumulative product stays informative. Ties go to the lowest index.

  Args:
    usage: ``[B, N]``.
    backend: for the sort (:mod:`dnc_jax.backend`).
  Returns:
    ``[B, N]``, summing to at most 1.
  """
  usage = ALLOCATION_EPSILON + (1.0 - ALLOCATION_EPSILON) * usage
  order = sorting.argsort(jax.lax.stop_gradient(usage), backend=backend)
  sorted_usage = jnp.take_along_axis(usage, order, axis=-1)
  exclusive_prod = jnp.cumprod(
      jnp.concatenate(
          [jnp.ones_like(sorted_usage[..., :1]), sorted_usage[..., :-1]],
          axis=-1),
      axis=-1)
  sorted_allocation = (1.0 - sorted_usage) * exclusive_prod
  return _unsort(sorted_allocation, order)


def _unsort(sorted_values: jax.Array, order: jax.Array) -> jax.Array:
  """``out[..., order[..., j]] = sorted_values[..., j]`` (one scatter, no sort)."""
  batch_shape = order.shape[:-1]
  flat_order = order.reshape(-1, order.shape[-1])
  flat_values = sorted_values.reshape(flat_order.shape)
  rows = jnp.arange(flat_order.shape[0])[:, None]
  out = jnp.zeros_like(flat_values).at[rows, flat_order].set(
      flat_values, unique_indices=True, indices_are_sorted=False)
  return out.reshape(*batch_shape, order.shape[-1])


def write_allocation_weights(usage: jax.Array, write_gates: jax.Array,
                             num_writes: int,
                             backend: str = "auto") -> jax.Array:
  """Allocation for each write head, head by head.

  After head ``h`` allocates, usage becomes ``u + (1 − u) g^h a^h`` so the
  next head prefers other slots.

  Args:
    usage: ``[B, N]``.
    write_gates: ``[B, H]``, the product ``g^{a,h} g^{w,h}`` per head.
    num_writes: ``H``.
    backend: for the sorts (:mod:`dnc_jax.backend`).
  Returns:
    ``[B, H, N]``.
  """
  allocations = []
  for head in range(num_writes):
    allocation = allocation_weights(usage, backend)
    allocations.append(allocation)
    usage = usage + (1.0 - usage) * write_gates[..., head, None] * allocation
  return jnp.stack(allocations, axis=-2)


def write_weights(content: jax.Array, allocation: jax.Array,
                  allocation_gates: jax.Array,
                  write_gates: jax.Array) -> jax.Array:
  """``w^w = g^w [g^a a + (1 − g^a) c^w]``.

  Args:
    content: ``[B, H, N]`` write content weights.
    allocation: ``[B, H, N]`` allocation weights.
    allocation_gates: ``[B, H]``.
    write_gates: ``[B, H]``.
  Returns:
    ``[B, H, N]``.
  """
  allocation_gates = allocation_gates[..., None]
  return write_gates[..., None] * (
      allocation_gates * allocation + (1.0 - allocation_gates) * content)


def erase_and_write(memory: jax.Array, write_weights_: jax.Array,
                    erase_vectors: jax.Array,
                    write_vectors: jax.Array) -> jax.Array:
  """``M ∘ Π_h (1 − w^h e^hᵀ) + Σ_h w^h v^hᵀ``.

  Args:
    memory: ``[B, N, W]``.
    write_weights_: ``[B, H, N]``.
    erase_vectors: ``[B, H, W]``.
    write_vectors: ``[B, H, W]``.
  Returns:
    ``[B, N, W]``.
  """
  erase = product_over_axis(
      1.0 - write_weights_[..., :, :, None] * erase_vectors[..., :, None, :],
      axis=-3)
  added = jnp.einsum("...hn,...hw->...nw", write_weights_, write_vectors)
  return memory * erase + added


def precedence_update(prev_precedence: jax.Array,
                      write_weights_: jax.Array) -> jax.Array:
  """``p_t = (1 − Σ_i w[i]) p_{t-1} + w`` per write head.

  Args:
    prev_precedence: ``[B, H, N]``.
    write_weights_: ``[B, H, N]``.
  Returns:
    ``[B, H, N]``.
  """
  written = jnp.sum(write_weights_, axis=-1, keepdims=True)
  return (1.0 - written) * prev_precedence + write_weights_


def _zero_diagonal(link: jax.Array) -> jax.Array:
  n = link.shape[-1]
  return jnp.where(jnp.eye(n, dtype=bool), jnp.zeros((), link.dtype), link)


def link_update(prev_link: jax.Array, prev_precedence: jax.Array,
                write_weights_: jax.Array) -> jax.Array:
  """Dense ``L[i,j] = (1 − w[i] − w[j]) L[i,j] + w[i] p_{t-1}[j]``, diagonal 0.

  Args:
    prev_link: ``[B, H, N, N]``.
    prev_precedence: ``[B, H, N]`` (of the previous step).
    write_weights_: ``[B, H, N]``.
  Returns:
    ``[B, H, N, N]``.
  """
  w_i = write_weights_[..., :, None]
  w_j = write_weights_[..., None, :]
  link = (1.0 - w_i - w_j) * prev_link + w_i * prev_precedence[..., None, :]
  return _zero_diagonal(link)


def top_k_normalise(weights: jax.Array, k: int,
                    backend: str = "auto") -> jax.Array:
  """Keep the ``k`` largest entries of the last axis, rescaled to sum to 1.

  An all-zero row stays zero (no division by zero). Ties keep the lowest
  indices.

  Args:
    weights: ``[..., N]`` non-negative.
    k: entries kept, ``1 <= k <= N``.
    backend: for the top-k (:mod:`dnc_jax.backend`).
  Returns:
    ``[..., N]``.
  """
  values, indices = sorting.top_k(weights, k, backend=backend)
  total = jnp.sum(values, axis=-1, keepdims=True)
  positive = total > 0
  values = jnp.where(positive, values / jnp.where(positive, total, 1.0), 0.0)
  one_hot = jax.nn.one_hot(indices, weights.shape[-1], dtype=weights.dtype)
  return jnp.einsum("...k,...kn->...n", values, one_hot)


def sparse_link_update(prev_link: jax.Array, prev_precedence: jax.Array,
                       write_weights_: jax.Array, k: int,
                       backend: str = "auto") -> jax.Array:
  """The paper's sparse link (``docs/maths.md`` §4), held dense.

  The write and precedence weights are cut to their top ``k`` and
  renormalised, the dense update applied, and entries below ``1/k`` zeroed,
  leaving at most ``k`` non-zeros per row and column. This is the reference
  for the ``O(N·K)`` indexed storage of :mod:`dnc_jax.links.indexed`.

  Args:
    prev_link: ``[B, H, N, N]``, itself truncated.
    prev_precedence: ``[B, H, N]``.
    write_weights_: ``[B, H, N]``.
    k: ``K``, at most ``N``.
    backend: for the top-k's (:mod:`dnc_jax.backend`).
  Returns:
    ``[B, H, N, N]``.
  """
  sparse_write = top_k_normalise(write_weights_, k, backend)
  sparse_precedence = top_k_normalise(prev_precedence, k, backend)
  link = link_update(prev_link, sparse_precedence, sparse_write)
  return jnp.where(link >= 1.0 / k, link, 0.0)


def directional_weights(link: jax.Array,
                        prev_read_weights: jax.Array) -> Tuple[jax.Array,
                                                               jax.Array]:
  """Forward ``f = L w^r_{t-1}`` and backward ``b = Lᵀ w^r_{t-1}`` weightings.

  Args:
    link: ``[B, H, N, N]``.
    prev_read_weights: ``[B, R, N]``.
  Returns:
    ``(forward, backward)``, each ``[B, R, H, N]``.
  """
  # These contraction layouts are the ones XLA:CPU runs as plain matrix
  # products; others (e.g. "...hij,...rj->...rhi") run several times slower.
  forward = jnp.einsum("...hij,...rj->...hir", link, prev_read_weights)
  backward = jnp.einsum("...hji,...rj->...hri", link, prev_read_weights)
  return jnp.moveaxis(forward, -1, -3), jnp.swapaxes(backward, -2, -3)


@jax.custom_vjp
def link_step(prev_link: jax.Array, prev_precedence: jax.Array,
              write_weights_: jax.Array,
              prev_read_weights: jax.Array) -> Tuple[jax.Array, jax.Array,
                                                     jax.Array]:
  """:func:`link_update` then :func:`directional_weights`, with a lean VJP.

  The values equal the two functions composed. The hand-written backward
  pass keeps only the inputs (the ``N × N`` previous link, nothing derived
  from it) and computes every cotangent in a few fused passes over ``N × N``,
  where automatic differentiation stores and reduces several ``N × N``
  intermediates.

  Args:
    prev_link: ``[B, H, N, N]``.
    prev_precedence: ``[B, H, N]``.
    write_weights_: ``[B, H, N]``.
    prev_read_weights: ``[B, R, N]``.
  Returns:
    ``(link [B, H, N, N], forward [B, R, H, N], backward [B, R, H, N])``.
  """
  link = link_update(prev_link, prev_precedence, write_weights_)
  return (link,) + directional_weights(link, prev_read_weights)


def _link_step_fwd(prev_link, prev_precedence, write_weights_,
                   prev_read_weights):
  outputs = link_step(prev_link, prev_precedence, write_weights_,
                      prev_read_weights)
  return outputs, (prev_link, prev_precedence, write_weights_,
                   prev_read_weights)


def _link_step_bwd(residuals, cotangents):
  prev_link, precedence, write, read = residuals
  g_link, g_forward, g_backward = cotangents
  link = link_update(prev_link, precedence, write)
  # Total cotangent of the new link, G[i, j]: its own plus, per read head r,
  # g_forward[r, i] read[r, j] + read[r, i] g_backward[r, j] (R is small, so
  # these outer products are unrolled into one element-wise fusion).
  total = g_link
  for r in range(read.shape[-2]):
    total = (total
             + g_forward[..., r, :, :, None] * read[..., r, None, None, :]
             + read[..., r, None, :, None] * g_backward[..., r, :, None, :])
  total = _zero_diagonal(total)
  g_read = (
      jnp.einsum("...hji,...rhj->...hri", link, g_forward)
      + jnp.swapaxes(jnp.einsum("...hij,...rhj->...hir", link, g_backward),
                     -1, -2)).sum(axis=-3)
  w_i, w_j = write[..., :, None], write[..., None, :]
  g_prev_link = (1.0 - w_i - w_j) * total
  total_times_link = total * prev_link
  g_write = (jnp.einsum("...ij,...j->...i", total, precedence)
             - jnp.sum(total_times_link, axis=-1)
             - jnp.sum(total_times_link, axis=-2))
  g_precedence = jnp.einsum("...ji,...j->...i", total, write)
  return g_prev_link, g_precedence, g_write, g_read


link_step.defvjp(_link_step_fwd, _link_step_bwd)


# Added to a directional weighting before it is sharpened, so that every
# entry is positive; the authors' value (Csordás & Schmidhuber, 2019).
SHARPNESS_EPSILON = 1e-6


def sharpen(weights: jax.Array, exponents: jax.Array,
            epsilon: float = SHARPNESS_EPSILON) -> jax.Array:
  """``S(d, s)[i] = (d[i] + ε)^s / Σ_j (d[j] + ε)^s`` (``docs/maths.md`` §8.3).

  Scaling ``d + ε`` by its (constant, gradient-stopped) maximum first keeps
  the powers in ``(0, 1]``; ``S`` does not change under scaling, so neither
  the value nor the gradient does.

  Args:
    weights: ``[..., N]`` non-negative.
    exponents: ``[...]`` (one per row), ``>= 1`` in the DNC.
  Returns:
    ``[..., N]``, each row summing to 1.
  """
  shifted = weights + epsilon
  shifted = shifted / jax.lax.stop_gradient(
      jnp.max(shifted, axis=-1, keepdims=True))
  powered = jnp.exp(exponents[..., None] * jnp.log(shifted))
  return powered / jnp.sum(powered, axis=-1, keepdims=True)


def sharpen_directional(forward: jax.Array, backward: jax.Array,
                        sharpness: jax.Array) -> Tuple[jax.Array, jax.Array]:
  """:func:`sharpen` each read head's forward and backward weightings.

  Args:
    forward: ``[B, R, H, N]``.
    backward: ``[B, R, H, N]``.
    sharpness: ``[B, R, 2H]``, laid out ``[backward × H, forward × H]``.
  Returns:
    ``(forward, backward)``, each ``[B, R, H, N]``.
  """
  num_writes = forward.shape[-2]
  return (sharpen(forward, sharpness[..., num_writes:]),
          sharpen(backward, sharpness[..., :num_writes]))


def read_weights(content: jax.Array, forward: jax.Array, backward: jax.Array,
                 read_modes: jax.Array) -> jax.Array:
  """``w^r = Σ_h π_b^h b^h + π_c c + Σ_h π_f^h f^h``.

  Args:
    content: ``[B, R, N]`` read content weights.
    forward: ``[B, R, H, N]``.
    backward: ``[B, R, H, N]``.
    read_modes: ``[B, R, 1 + 2H]``, laid out ``[backward × H, content,
      forward × H]``.
  Returns:
    ``[B, R, N]``.
  """
  num_writes = forward.shape[-2]
  backward_mode = read_modes[..., :num_writes]
  content_mode = read_modes[..., num_writes]
  forward_mode = read_modes[..., num_writes + 1:]
  return (content_mode[..., None] * content
          + jnp.einsum("...rh,...rhn->...rn", backward_mode, backward)
          + jnp.einsum("...rh,...rhn->...rn", forward_mode, forward))


def read_words(read_weights: jax.Array, memory: jax.Array) -> jax.Array:
  """The words read: ``r = Mᵀ w^r``.

  Args:
    read_weights: ``[B, R, N]``.
    memory: ``[B, N, W]``.
  Returns:
    ``[B, R, W]``.
  """
  return jnp.einsum("...rn,...nw->...rw", read_weights, memory)
