"""The CPU sort kernels against jnp.argsort and jax.lax.top_k."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dnc_jax import cpu_kernels, sorting

# Skipped only where no compiler exists; with one, a kernel that fails to
# build fails these tests.
pytestmark = pytest.mark.skipif(cpu_kernels.compiler() is None,
                                reason="no C++ compiler for the CPU kernels")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_argsort_is_stable_and_matches_jnp(dtype):
  rng = np.random.default_rng(0)
  x = rng.integers(0, 50, size=(3, 2, 700)).astype(dtype)  # many ties
  got = jax.jit(sorting.argsort)(x)
  assert got.dtype == jnp.int32
  np.testing.assert_array_equal(got, np.argsort(x, axis=-1, kind="stable"))
  lowered = jax.jit(sorting.argsort).lower(x).as_text()
  assert "DncArgsort" in lowered


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_top_k_matches_lax_top_k_with_gradients(dtype):
  rng = np.random.default_rng(1)
  x = rng.integers(0, 30, size=(4, 600)).astype(dtype)
  values, indices = jax.jit(lambda x: sorting.top_k(x, 7))(x)
  want_values, want_indices = jax.lax.top_k(jnp.asarray(x), 7)
  np.testing.assert_array_equal(indices, want_indices)
  np.testing.assert_array_equal(values, want_values)
  weights = rng.normal(size=(4, 7))
  grad = jax.grad(lambda x: jnp.sum(sorting.top_k(x, 7)[0] * weights))(x)
  want = jax.grad(lambda x: jnp.sum(jax.lax.top_k(x, 7)[0] * weights))(x)
  np.testing.assert_array_equal(grad, want)


def test_vmap_over_the_kernels():
  x = np.random.default_rng(2).normal(size=(3, 5, 800))
  np.testing.assert_array_equal(jax.vmap(sorting.argsort)(x),
                                np.argsort(x, axis=-1, kind="stable"))
  np.testing.assert_array_equal(jax.vmap(lambda r: sorting.top_k(r, 3)[1])(x),
                                jax.lax.top_k(x, 3)[1])
