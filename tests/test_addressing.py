"""Each addressing function against the NumPy reference (float64)."""

import jax.numpy as jnp
import numpy as np
import pytest

import reference as ref
from dnc_jax import addressing

B, N, W, R, H = 3, 12, 5, 4, 2


@pytest.fixture
def rng():
  return np.random.default_rng(0)


def per_example(fn, *args):
  return np.stack([fn(*[a[i] for a in args]) for i in range(len(args[0]))])


def test_content_weights(rng):
  memory = rng.normal(size=(B, N, W))
  keys = rng.normal(size=(B, R, W))
  strengths = rng.uniform(1, 10, size=(B, R))
  got = addressing.content_weights(memory, keys, strengths)
  np.testing.assert_allclose(
      got, per_example(ref.content, memory, keys, strengths), atol=1e-12)


def test_content_weights_at_zero_memory_is_uniform(rng):
  got = addressing.content_weights(np.zeros((B, N, W)),
                                   rng.normal(size=(B, R, W)),
                                   np.full((B, R), 5.0))
  np.testing.assert_allclose(got, 1.0 / N, atol=1e-12)


def test_usage_update(rng):
  prev_usage = rng.uniform(size=(B, N))
  prev_write = rng.uniform(size=(B, H, N)) / N
  free = rng.uniform(size=(B, R))
  prev_read = rng.uniform(size=(B, R, N)) / N
  got = addressing.usage_update(prev_usage, prev_write, free, prev_read)
  want = per_example(ref.usage, prev_usage, prev_write, free, prev_read)
  np.testing.assert_allclose(got, want, atol=1e-12)


@pytest.mark.parametrize("seed", range(3))
def test_allocation_weights(seed):
  usage = np.random.default_rng(seed).uniform(size=(B, N))
  np.testing.assert_allclose(addressing.allocation_weights(usage),
                             per_example(ref.allocation, usage), atol=1e-12)


def test_allocation_with_ties_follows_index_order():
  usage = np.array([[0.5, 0.0, 0.0, 0.5, 1.0]])
  got = np.asarray(addressing.allocation_weights(usage))
  np.testing.assert_allclose(got, per_example(ref.allocation, usage),
                             atol=1e-12)
  assert got[0].argmax() == 1


def test_write_allocation_weights_several_heads(rng):
  usage = rng.uniform(size=(B, N))
  gates = rng.uniform(size=(B, H))
  got = addressing.write_allocation_weights(usage, gates, H)
  want = per_example(ref.write_allocations, usage, gates)
  np.testing.assert_allclose(got, want, atol=1e-12)
  # The second head avoids the slot the first one took.
  assert np.all(np.argmax(got[:, 0], -1) != np.argmax(got[:, 1], -1))


def test_write_weights(rng):
  content = rng.uniform(size=(B, H, N))
  alloc = rng.uniform(size=(B, H, N))
  ga, gw = rng.uniform(size=(B, H)), rng.uniform(size=(B, H))
  np.testing.assert_allclose(
      addressing.write_weights(content, alloc, ga, gw),
      per_example(ref.write_weighting, content, alloc, ga, gw), atol=1e-12)


def test_erase_and_write(rng):
  memory = rng.normal(size=(B, N, W))
  ww = rng.uniform(size=(B, H, N)) / N
  erase = rng.uniform(size=(B, H, W))
  values = rng.normal(size=(B, H, W))
  np.testing.assert_allclose(
      addressing.erase_and_write(memory, ww, erase, values),
      per_example(ref.erase_write, memory, ww, erase, values), atol=1e-12)


def _link_inputs(rng):
  prev = rng.uniform(size=(B, H, N, N)) / N
  prev *= 1 - np.eye(N)
  # Concentrated weights, so some sparse links pass the 1/K threshold.
  prec = rng.dirichlet(np.ones(N) * 0.1, size=(B, H)) * 0.9
  ww = rng.dirichlet(np.ones(N) * 0.1, size=(B, H)) * 0.9
  return prev, prec, ww


def test_link_and_precedence_update(rng):
  prev, prec, ww = _link_inputs(rng)
  got = addressing.link_update(prev, prec, ww)
  want = np.array([[ref.link(prev[b, h], prec[b, h], ww[b, h])
                    for h in range(H)] for b in range(B)])
  np.testing.assert_allclose(got, want, atol=1e-12)
  np.testing.assert_allclose(
      addressing.precedence_update(prec, ww),
      np.array([[ref.precedence(prec[b, h], ww[b, h]) for h in range(H)]
                for b in range(B)]), atol=1e-12)


@pytest.mark.parametrize("k", [1, 2, 5])
def test_sparse_link_update(rng, k):
  prev, prec, ww = _link_inputs(rng)
  prev = np.array([[ref.sparse_link(prev[b, h], prec[b, h], ww[b, h], k)
                    for h in range(H)] for b in range(B)])
  got = addressing.sparse_link_update(prev, prec, ww, k)
  want = np.array([[ref.sparse_link(prev[b, h], prec[b, h], ww[b, h], k)
                    for h in range(H)] for b in range(B)])
  np.testing.assert_allclose(got, want, atol=1e-12)
  assert np.count_nonzero(want) > 0
  assert np.all(np.count_nonzero(np.asarray(got), axis=-1) <= k)


def test_top_k_normalise_keeps_zero_rows_zero():
  w = np.array([[0.0, 0.0, 0.0], [0.1, 0.3, 0.2]])
  got = np.asarray(addressing.top_k_normalise(w, 2))
  np.testing.assert_allclose(got, [[0, 0, 0], [0, 0.6, 0.4]], atol=1e-12)


def test_directional_and_read_weights(rng):
  link = rng.uniform(size=(B, H, N, N)) / N
  prev_read = rng.uniform(size=(B, R, N)) / N
  forward, backward = addressing.directional_weights(link, prev_read)
  for b in range(B):
    for r in range(R):
      for h in range(H):
        np.testing.assert_allclose(forward[b, r, h], link[b, h] @ prev_read[b, r],
                                   atol=1e-12)
        np.testing.assert_allclose(backward[b, r, h],
                                   link[b, h].T @ prev_read[b, r], atol=1e-12)
  content = rng.uniform(size=(B, R, N))
  modes = rng.dirichlet(np.ones(1 + 2 * H), size=(B, R))
  got = np.asarray(addressing.read_weights(content, forward, backward, modes))
  f, bw = np.asarray(forward), np.asarray(backward)
  want = modes[..., H, None] * content
  for h in range(H):
    want = want + modes[..., h, None] * bw[:, :, h] + (
        modes[..., H + 1 + h, None] * f[:, :, h])
  np.testing.assert_allclose(got, want, atol=1e-12)


def test_vector_norms_gradient_finite_at_zero():
  import jax
  g = jax.grad(lambda x: addressing.vector_norms(x).sum())(jnp.zeros((3, 4)))
  assert np.all(np.isfinite(g))
