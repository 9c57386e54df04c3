"""The full memory step against the NumPy reference over many steps."""

import jax
import numpy as np
import pytest

import reference as ref
from helpers import example, random_interface, state_to_reference
from dnc_jax import (DNCConfig, cpu_kernels, initial_access_state,
                     memory_step)

STEPS = 12
N, W = 10, 4


def run_both(config, steps, rng, sharp, storage_sparsity, backend):
  b = 2
  state = initial_access_state(config, b, np.float64)
  ref_states = [state_to_reference(state, i) for i in range(b)]
  step = jax.jit(lambda i, s: memory_step(i, s, link_sparsity=storage_sparsity,
                                          backend=backend))
  links_seen = 0
  for _ in range(steps):
    iface = random_interface(rng, b, config.num_reads, config.num_writes, W,
                             sharp=sharp, links=config.use_temporal_links)
    words, state = step(iface, state)
    for i in range(b):
      want_words, ref_states[i] = ref.step(
          example(iface, i), ref_states[i], config.link_sparsity,
          config.use_temporal_links)
      got = state_to_reference(state, i)
      np.testing.assert_allclose(words[i], want_words, atol=1e-9)
      for key, value in ref_states[i].items():
        np.testing.assert_allclose(got[key], value, atol=1e-9, err_msg=key)
      links_seen += np.count_nonzero(ref_states[i].get("link", 0))
  return links_seen


@pytest.mark.parametrize("num_writes", [1, 3])
@pytest.mark.parametrize("num_reads", [1, 4])
@pytest.mark.parametrize("link,backend", [
    ("dense", "xla"), ("dense", "fused"), ("sparse_dense", "xla"),
    ("sparse_dense", "fused"), ("sparse_indexed", "xla"),
    ("sparse_indexed", "fused"), ("none", "xla"), ("none", "fused")])
def test_memory_step_matches_reference(num_writes, num_reads, link, backend):
  if backend == "fused" and cpu_kernels.compiler() is None:
    pytest.skip("no C++ compiler for the fused kernel")
  sparsity = None if link in ("dense", "none") else 3
  config = DNCConfig(output_size=1, memory_size=N, word_size=W,
                     num_reads=num_reads, num_writes=num_writes,
                     link_sparsity=sparsity,
                     link_storage="indexed" if link == "sparse_indexed"
                     else "dense", use_temporal_links=link != "none")
  storage_sparsity = sparsity if link == "sparse_dense" else None
  rng = np.random.default_rng(num_writes * 10 + num_reads)
  # Sharp interfaces make writes concentrated so sparse links survive 1/K.
  links_seen = run_both(config, STEPS, rng, sharp=3.0,
                        storage_sparsity=storage_sparsity, backend=backend)
  # The comparison covers links only if some were actually made.
  assert (links_seen > 0) == (link != "none")
