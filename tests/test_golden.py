"""The pure step against the original TF release's recorded memory access."""

import functools
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dnc_jax import (AccessState, MemoryInterface, TemporalLinkageState,
                     cpu_kernels, memory_step)

GOLDEN = pathlib.Path(__file__).parent / "data" / "official_access.npz"


def _to_library_modes(modes, h):
  """Original [backward × H, forward × H, content] -> ours [b × H, c, f × H]."""
  return np.concatenate([modes[..., :h], modes[..., 2 * h:], modes[..., h:2 * h]],
                        axis=-1)


@pytest.mark.parametrize("backend", ["xla", "fused"])
@pytest.mark.parametrize("case", ["h1", "h3"])
def test_matches_original_release(case, backend):
  if backend == "fused" and cpu_kernels.compiler() is None:
    pytest.skip("no C++ compiler for the fused kernel")
  data = np.load(GOLDEN)
  g = {k.split("/", 1)[1]: data[k] for k in data.files if k.startswith(case)}
  h = g["initial_write_weights"].shape[1]
  state = AccessState(
      memory=jnp.asarray(g["initial_memory"]),
      read_weights=jnp.asarray(g["initial_read_weights"]),
      write_weights=jnp.asarray(g["initial_write_weights"]),
      linkage=TemporalLinkageState(
          link=jnp.asarray(g["initial_link"]),
          precedence_weights=jnp.asarray(g["initial_precedence_weights"])),
      usage=jnp.asarray(g["initial_usage"]))
  assert state.memory.dtype == jnp.float32
  step = jax.jit(functools.partial(memory_step, backend=backend))
  for t in range(g["read_words"].shape[0]):
    iface = MemoryInterface(
        read_keys=g["read_content_keys"][t],
        read_strengths=g["read_content_strengths"][t],
        write_keys=g["write_content_keys"][t],
        write_strengths=g["write_content_strengths"][t],
        erase_vectors=g["erase_vectors"][t],
        write_vectors=g["write_vectors"][t],
        free_gates=g["free_gate"][t],
        allocation_gates=g["allocation_gate"][t],
        write_gates=g["write_gate"][t],
        read_modes=_to_library_modes(g["read_mode"][t], h))
    words, state = step(jax.tree.map(jnp.asarray, iface), state)
    got = {"read_words": words, "memory": state.memory,
           "read_weights": state.read_weights,
           "write_weights": state.write_weights, "usage": state.usage,
           "link": state.linkage.link,
           "precedence_weights": state.linkage.precedence_weights}
    for key, value in got.items():
      assert value.dtype == jnp.float32
      np.testing.assert_allclose(value, g[key][t], rtol=1e-5, atol=1e-6,
                                 err_msg=f"{case} step {t} {key}")
