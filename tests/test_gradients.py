"""Gradient checks in float64 (jax.test_util.check_grads)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.test_util import check_grads

from helpers import random_interface, random_state
from dnc_jax import addressing, memory_step
from dnc_jax.links import indexed as sparse_link

TOL = dict(atol=1e-5, rtol=1e-5, eps=1e-6)


def test_content_weights_gradient():
  rng = np.random.default_rng(0)
  args = (rng.normal(size=(2, 7, 3)), rng.normal(size=(2, 2, 3)),
          rng.uniform(1, 5, size=(2, 2)))
  check_grads(jax.jit(addressing.content_weights), args, order=2,
              modes=("fwd", "rev"), **TOL)


def test_content_weights_gradient_at_zero_memory():
  rng = np.random.default_rng(1)
  args = (np.zeros((2, 7, 3)), rng.normal(size=(2, 2, 3)),
          rng.uniform(1, 5, size=(2, 2)))
  # Near M = 0 the norm is sqrt(ε) ~ 1e-3, so the curvature is large: take a
  # finer finite-difference step than elsewhere.
  check_grads(jax.jit(addressing.content_weights), args, order=1,
              modes=("rev",), atol=1e-5, rtol=1e-5, eps=1e-8)


def test_allocation_gradient():
  usage = np.random.default_rng(2).permutation(np.linspace(0.05, 0.95, 9))
  check_grads(addressing.allocation_weights, (usage[None],), order=1,
              modes=("fwd", "rev"), **TOL)
  gates = np.array([[0.7, 0.4, 0.9]])
  check_grads(lambda u, g: addressing.write_allocation_weights(u, g, 3),
              (usage[None], gates), order=1, modes=("rev",), **TOL)


def test_usage_gradient_skips_previous_write_weights():
  rng = np.random.default_rng(3)
  args = (rng.uniform(size=(1, 5)), rng.uniform(size=(1, 2, 5)) / 5,
          rng.uniform(size=(1, 3)), rng.uniform(size=(1, 3, 5)) / 5)
  grads = jax.grad(lambda *a: addressing.usage_update(*a).sum(),
                   argnums=(0, 1, 2, 3))(*args)
  assert np.all(np.asarray(grads[1]) == 0.0)
  assert np.any(np.asarray(grads[2]) != 0.0)
  assert np.any(np.asarray(grads[3]) != 0.0)
  check_grads(lambda u, f, r: addressing.usage_update(u, args[1], f, r),
              (args[0], args[2], args[3]), order=1, modes=("rev",), **TOL)


def test_link_update_gradient():
  rng = np.random.default_rng(4)
  prev = rng.uniform(size=(2, 1, 6, 6)) / 6 * (1 - np.eye(6))
  args = (prev, rng.uniform(size=(2, 1, 6)) / 6,
          rng.dirichlet(np.ones(6), size=(2, 1)) * 0.8)
  check_grads(jax.jit(addressing.link_update), args, order=2,
              modes=("fwd", "rev"), **TOL)
  check_grads(jax.jit(addressing.directional_weights),
              (prev, rng.uniform(size=(2, 3, 6)) / 6), order=1,
              modes=("rev",), **TOL)


def test_indexed_sparse_link_gradient_equals_dense_truncated():
  rng = np.random.default_rng(5)
  n, k = 8, 3
  # Writes concentrated on a slot or two, so links pass the 1/K threshold.
  def sharp():
    return 0.9 * np.asarray(jax.nn.softmax(4.0 * rng.normal(size=n)))
  ww, prec = sharp(), sharp()
  read = rng.uniform(size=(2, n)) / n
  prev_dense = addressing.sparse_link_update(np.zeros((n, n)), prec, ww, k)
  prev_idx, prev_val = sparse_link.link_update(
      jnp.zeros((n, k), jnp.int32), jnp.zeros((n, k)), prec, ww, k)
  new_ww = sharp()

  def dense_loss(w, p, r):
    link = addressing.sparse_link_update(prev_dense, p, w, k)
    f, b = addressing.directional_weights(link[None], r)
    return jnp.sum(f * jnp.arange(n)) + jnp.sum(b ** 2) + jnp.sum(link ** 2)

  def indexed_loss(w, p, r):
    idx, val = sparse_link.link_update(prev_idx, prev_val, p, w, k)
    f = sparse_link.forward_weights(idx, val, r)
    b = sparse_link.backward_weights(idx, val, r)
    return (jnp.sum(f * jnp.arange(n)) + jnp.sum(b ** 2)
            + jnp.sum(val ** 2))

  args = (new_ww, ww, read)
  np.testing.assert_allclose(indexed_loss(*args), dense_loss(*args),
                             atol=1e-12)
  assert dense_loss(*args) > 0.01
  for g_i, g_d in zip(
      jax.jit(jax.grad(indexed_loss, argnums=(0, 1, 2)))(*args),
      jax.jit(jax.grad(dense_loss, argnums=(0, 1, 2)))(*args)):
    np.testing.assert_allclose(g_i, g_d, atol=1e-10)


def test_full_step_gradient():
  rng = np.random.default_rng(6)
  b, n, w, r, h = 2, 6, 3, 2, 2
  iface = random_interface(rng, b, r, h, w)
  state = random_state(rng, b, n, w, r, h)

  # Usage deliberately takes no gradient from the previous write weights
  # (``docs/maths.md`` §3, step 1), which finite differences would see: hold
  # them fixed.
  def step(iface, memory, read_weights, linkage, usage):
    full = state._replace(memory=memory, read_weights=read_weights,
                          linkage=linkage, usage=usage)
    words, new = memory_step(iface, full)
    return words, new.memory, new.usage, new.linkage.link

  check_grads(jax.jit(step), (iface, state.memory, state.read_weights,
                              state.linkage, state.usage), order=1,
              modes=("rev",), **TOL)



def test_fused_link_step_values_and_gradients():
  """link_step's hand-written VJP against check_grads and plain autodiff."""
  rng = np.random.default_rng(7)
  b, h, n, r = 2, 2, 6, 3
  prev = rng.uniform(size=(b, h, n, n)) / n * (1 - np.eye(n))
  prec = rng.dirichlet(np.ones(n), size=(b, h)) * 0.8
  write = rng.dirichlet(np.ones(n), size=(b, h)) * 0.8
  read = rng.dirichlet(np.ones(n), size=(b, r))
  args = (prev, prec, write, read)

  def composed(prev, prec, write, read):
    link = addressing.link_update(prev, prec, write)
    return (link,) + addressing.directional_weights(link, read)

  for got, want in zip(addressing.link_step(*args), composed(*args)):
    np.testing.assert_allclose(got, want, atol=1e-14)
  check_grads(addressing.link_step, args, order=1, modes=("rev",), **TOL)
  cotangents = tuple(rng.normal(size=np.shape(x)) for x in composed(*args))
  fused = jax.vjp(addressing.link_step, *args)[1](cotangents)
  plain = jax.vjp(composed, *args)[1](cotangents)
  for got, want in zip(fused, plain):
    np.testing.assert_allclose(got, want, atol=1e-12)
