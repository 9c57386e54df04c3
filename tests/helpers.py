"""Shared helpers: random interfaces and states, conversions for the reference."""

import jax
import numpy as np

from dnc_jax import (AccessState, MemoryInterface, SparseTemporalLinkageState,
                     TemporalLinkageState)
from dnc_jax.links import indexed as sparse_link


def softmax(x, axis=-1):
  e = np.exp(x - x.max(axis=axis, keepdims=True))
  return e / e.sum(axis=axis, keepdims=True)


def sigmoid(x):
  return 1.0 / (1.0 + np.exp(-x))


def random_interface(rng, b, r, h, w, sharp=1.0, links=True):
  """A squashed interface with float64 NumPy fields; ``sharp`` scales logits."""
  def n(*shape):
    return rng.normal(size=shape)
  return MemoryInterface(
      read_keys=n(b, r, w),
      read_strengths=1.0 + np.log1p(np.exp(sharp * n(b, r))),
      write_keys=n(b, h, w),
      write_strengths=1.0 + np.log1p(np.exp(sharp * n(b, h))),
      erase_vectors=sigmoid(n(b, h, w)),
      write_vectors=n(b, h, w),
      free_gates=sigmoid(sharp * n(b, r)),
      allocation_gates=sigmoid(sharp * n(b, h)),
      write_gates=sigmoid(sharp * n(b, h) + 1.0),
      read_modes=softmax(sharp * n(b, r, 1 + 2 * h)) if links else None)


def random_state(rng, b, n, w, r, h):
  """A random valid dense-link state (weights summing to < 1, usage distinct)."""
  def weights(*shape):
    x = rng.uniform(size=shape)
    return 0.9 * x / x.sum(axis=-1, keepdims=True)
  link = rng.uniform(size=(b, h, n, n)) / n
  link *= 1.0 - np.eye(n)
  return AccessState(
      memory=rng.normal(size=(b, n, w)),
      read_weights=weights(b, r, n),
      write_weights=weights(b, h, n),
      linkage=TemporalLinkageState(link=link,
                                   precedence_weights=weights(b, h, n)),
      usage=rng.permutation(np.linspace(0.05, 0.95, n))[None].repeat(b, 0))


def example(tree, i):
  """Example ``i`` of a batched interface, as a dict of NumPy arrays."""
  return {k: (None if v is None else np.asarray(v)[i])
          for k, v in tree._asdict().items()}


def state_to_reference(state: AccessState, i: int) -> dict:
  """Example ``i`` of a library state as the reference's dict."""
  linkage = state.linkage
  out = dict(memory=np.asarray(state.memory[i]),
             read_weights=np.asarray(state.read_weights[i]),
             write_weights=np.asarray(state.write_weights[i]),
             usage=np.asarray(state.usage[i]))
  if isinstance(linkage, TemporalLinkageState):
    out["link"] = np.asarray(linkage.link[i])
  elif isinstance(linkage, SparseTemporalLinkageState):
    dense = jax.vmap(sparse_link.to_dense)(linkage.link_indices[i],
                                           linkage.link_values[i])
    out["link"] = np.asarray(dense)
  if linkage is not None:
    out["precedence"] = np.asarray(linkage.precedence_weights[i])
  return out
