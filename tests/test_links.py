"""The link kinds of dnc_jax.links: choice, state, step and dense view."""

import importlib
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import reference as ref
from helpers import random_interface
from dnc_jax import (DNCConfig, SparseTemporalLinkageState,
                     TemporalLinkageState, initial_access_state, links,
                     memory_step)

B, N, W, R, H, K = 2, 7, 4, 3, 2, 3


def cfg(**kw):
  return DNCConfig(output_size=1, memory_size=N, word_size=W, num_reads=R,
                   num_writes=H, **kw)


CONFIGS = {
    "none": cfg(use_temporal_links=False),
    "none_with_k": cfg(use_temporal_links=False, link_sparsity=K),
    "dense": cfg(),
    "truncated": cfg(link_sparsity=K, link_storage="dense"),
    "indexed": cfg(link_sparsity=K, link_storage="indexed"),
    "dense_ignores_storage": cfg(link_storage="dense"),
}
KIND = {"none": "none", "none_with_k": "none", "dense": "dense",
        "truncated": "truncated", "indexed": "indexed",
        "dense_ignores_storage": "dense"}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_from_config_picks_the_kind(name):
  config = CONFIGS[name]
  link = links.from_config(config)
  assert link.name == KIND[name]
  assert config.sparse_link_indexed == (KIND[name] == "indexed")
  state = initial_access_state(config, B)
  # The state's kind is the config's kind (the pure step recovers it).
  k = K if link.name == "truncated" else None
  assert links.from_state(state.linkage, k).name == link.name


@pytest.mark.parametrize("name,batch", [("dense", B), ("truncated", None),
                                        ("indexed", B), ("indexed", None),
                                        ("none", B)])
def test_initial_state_shapes(name, batch):
  state = initial_access_state(CONFIGS[name], batch)
  lead = () if batch is None else (batch,)
  assert state.memory.shape == lead + (N, W)
  assert state.read_weights.shape == lead + (R, N)
  view = links.dense_view(state.linkage)
  if name == "none":
    assert state.linkage is None and view is None
    return
  assert state.linkage.precedence_weights.shape == lead + (H, N)
  assert view.shape == lead + (H, N, N)
  np.testing.assert_array_equal(view, 0)
  if name == "indexed":
    assert state.linkage.link_indices.shape == lead + (H, N, K)
    assert state.linkage.link_indices.dtype == jnp.int32


def test_dense_view_of_indexed_pairs_matches_numpy():
  rng = np.random.default_rng(0)
  indices = np.stack([rng.permutation(N)[:K] for _ in range(B * H * N)])
  indices = indices.reshape(B, H, N, K).astype(np.int32)
  values = rng.uniform(size=(B, H, N, K))
  want = np.zeros((B, H, N, N))
  for b in range(B):
    for h in range(H):
      for i in range(N):
        for j in range(K):
          want[b, h, i, indices[b, h, i, j]] += values[b, h, i, j]
  linkage = SparseTemporalLinkageState(indices, values, np.zeros((B, H, N)))
  np.testing.assert_allclose(links.dense_view(linkage), want)
  dense = TemporalLinkageState(want, np.zeros((B, H, N)))
  np.testing.assert_array_equal(links.dense_view(dense), want)


@pytest.mark.parametrize("backend", ["xla", "auto"])
def test_sparse_kinds_step_like_the_numpy_reference(backend):
  # A few steps of the indexed and the truncated kinds from zero state; the
  # links must equal NumPy's top-K link (tests/reference.py) at each step.
  rng = np.random.default_rng(1)
  indexed = links.from_config(CONFIGS["indexed"])
  truncated = links.from_config(CONFIGS["truncated"])
  lk_i = indexed.initial_state((B,), H, N, jnp.float64)
  lk_t = truncated.initial_state((B,), H, N, jnp.float64)
  want = np.zeros((B, H, N, N))
  prec = np.zeros((B, H, N))
  for _ in range(4):
    logits = 3.0 * rng.normal(size=(B, H, N))
    write = 0.9 * np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    prev_read = rng.dirichlet(np.ones(N), size=(B, R))
    content = rng.dirichlet(np.ones(N), size=(B, R))
    modes = rng.dirichlet(np.ones(1 + 2 * H), size=(B, R))
    memory = rng.normal(size=(B, N, W))
    want = np.array([[ref.sparse_link(want[b, h], prec[b, h], write[b, h], K)
                      for h in range(H)] for b in range(B)])
    prec = np.array([[ref.precedence(prec[b, h], write[b, h])
                      for h in range(H)] for b in range(B)])
    args = (write, prev_read, content, modes, memory)
    lk_i, rw_i, words_i = indexed.step(lk_i, *args, backend=backend)
    lk_t, rw_t, words_t = truncated.step(lk_t, *args, backend=backend)
    np.testing.assert_allclose(links.dense_view(lk_i), want, atol=1e-12)
    np.testing.assert_allclose(links.dense_view(lk_t), want, atol=1e-12)
    np.testing.assert_allclose(lk_i.precedence_weights, prec, atol=1e-12)
    # Read weights: modes [backward × H, content, forward × H].
    fwd = np.einsum("bhij,brj->brhi", want, prev_read)
    bwd = np.einsum("bhji,brj->brhi", want, prev_read)
    rw = (modes[..., H, None] * content
          + np.einsum("brh,brhn->brn", modes[..., :H], bwd)
          + np.einsum("brh,brhn->brn", modes[..., H + 1:], fwd))
    np.testing.assert_allclose(rw_i, rw, atol=1e-12)
    np.testing.assert_allclose(rw_t, rw, atol=1e-12)
    np.testing.assert_allclose(words_i, np.einsum("brn,bnw->brw", rw, memory),
                               atol=1e-12)
    np.testing.assert_allclose(words_t, words_i, atol=1e-12)
  assert np.count_nonzero(want) > 0


def test_from_state_refuses_bad_sparsity_and_unknown_states():
  state = initial_access_state(CONFIGS["dense"], B)
  for bad in (0, -2, 2.0, True, "3"):
    with pytest.raises(ValueError, match="link_sparsity"):
      links.from_state(state.linkage, bad)
  with pytest.raises(ValueError, match="linkage must be None"):
    links.from_state({"link": 1})
  assert links.from_state(state.linkage, np.int64(2)) == links.Link(
      links.truncated, 2)


def test_memory_step_link_sparsity_zero_is_a_value_error():
  state = initial_access_state(CONFIGS["dense"], B, jnp.float64)
  iface = random_interface(np.random.default_rng(0), B, R, H, W)
  for backend in ("xla", "auto"):
    with pytest.raises(ValueError, match="link_sparsity"):
      memory_step(iface, state, link_sparsity=0, backend=backend)
    with pytest.raises(ValueError, match=r"link_sparsity must be an int in "
                       r"\[1, N = 7\]"):
      memory_step(iface, state, link_sparsity=N + 1, backend=backend)


def test_a_state_of_another_kind_is_refused():
  # MemoryAccess's config says indexed; a dense state must not be stepped.
  iface = random_interface(np.random.default_rng(0), B, R, H, W)
  dense = initial_access_state(CONFIGS["dense"], B, jnp.float64)
  from dnc_jax import access
  with pytest.raises(ValueError, match="link kind is 'indexed'"):
    access._memory_step(iface, dense,
                        links.from_config(CONFIGS["indexed"]), "xla")
  none = initial_access_state(CONFIGS["none"], B, jnp.float64)
  with pytest.raises(ValueError, match="state has no temporal links"):
    memory_step(iface, none, link_sparsity=K)


def test_sparse_link_alias_warns_and_keeps_use_kernel():
  sys.modules.pop("dnc_jax.sparse_link", None)
  with pytest.warns(DeprecationWarning, match="links.indexed"):
    sparse_link = importlib.import_module("dnc_jax.sparse_link")
  state = initial_access_state(CONFIGS["indexed"], B, jnp.float64)
  write = jax.nn.softmax(jnp.arange(B * H * N, dtype=jnp.float64).reshape(
      B, H, N))
  lk = state.linkage
  got = sparse_link.update(lk.link_indices, lk.link_values,
                           lk.precedence_weights, write, use_kernel=False)
  want = links.indexed.update(lk.link_indices, lk.link_values,
                              lk.precedence_weights, write, backend="xla")
  for a, b in zip(got, want):
    np.testing.assert_array_equal(a, b)
  assert sparse_link.to_dense is links.indexed.to_dense
