"""Every C++ kernel executed, multi-threaded, against independent NumPy.

Each test lowers the public entry point and checks that the kernel's custom
call target is in the HLO (so the kernel, not XLA, computed the values),
then compares with NumPy: ``np.argsort`` for the sorts, ``reference.py``'s
explicit-loop memory step for the memory step and the sparse link. The
backward kernels (which the reference lacks) are compared with XLA's
autodiff of the library's XLA path.

Sizes reach the multi-threaded path of ``csrc/parallel.h``: ``ParallelFor``
uses ``min(pool threads, count, count * cost_per_item / 2**15)`` threads,
so each call below has ``count >= 2`` items and ``count * cost >= 2**16``
(worked out per kernel beside each size); XLA's CPU thread pool has one
thread per core, so on two or more cores the threaded path runs.
The sort kernels engage from 4,096 elements (``sorting._KERNEL_MIN_SIZE``).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import reference as ref
from helpers import example, random_interface, random_state, state_to_reference
from dnc_jax import (DNCConfig, cpu_kernels, initial_access_state,
                     memory_step, sorting)


def _require_kernels():
  # With DNC_JAX_REQUIRE_KERNELS=1 (CI) conftest turns this skip into a
  # failure.
  if not cpu_kernels.available():
    pytest.skip("the C++ kernels are unavailable (no compiler?)")


@pytest.fixture(autouse=True)
def kernels():
  _require_kernels()


def hlo(fn, *args):
  return jax.jit(fn).lower(*args).as_text()


def rows_with_ties(rng, shape, dtype):
  # Integers from a small range: many ties, so stability is tested; no -0.
  return rng.integers(-500, 500, size=shape).astype(dtype)


# Argsort: cost rows.length * 16, 4 rows of 8,192 -> 4 * 131,072 / 2**15
# = 16 tasks. Top-k: cost rows.length * 2, 8 rows of 8,192 -> 4 tasks.
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_argsort_kernel_is_stable_and_matches_numpy(dtype):
  x = rows_with_ties(np.random.default_rng(0), (4, 8192), dtype)
  assert f"DncArgsort{'F32' if dtype == np.float32 else 'F64'}" in hlo(
      sorting.argsort, x)
  got = np.asarray(jax.jit(sorting.argsort)(x))
  np.testing.assert_array_equal(got, np.argsort(x, axis=-1, kind="stable"))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("k", [1, 37])
def test_top_k_kernel_matches_numpy(dtype, k):
  x = rows_with_ties(np.random.default_rng(k), (8, 8192), dtype)
  fn = lambda x: sorting.top_k(x, k)
  assert f"DncTopK{'F32' if dtype == np.float32 else 'F64'}" in hlo(fn, x)
  values, indices = jax.jit(fn)(x)
  # Descending, equal values lower index first: a stable sort of -x.
  want = np.argsort(-x, axis=-1, kind="stable")[:, :k]
  np.testing.assert_array_equal(np.asarray(indices), want)
  np.testing.assert_array_equal(np.asarray(values),
                                np.take_along_axis(x, want, axis=-1))


def test_one_row_at_the_threshold_uses_the_kernel():
  x = np.random.default_rng(3).normal(size=4096)
  assert "DncArgsortF64" in hlo(sorting.argsort, x)
  np.testing.assert_array_equal(np.asarray(sorting.argsort(x)),
                                np.argsort(x, kind="stable"))


# Memory step, dense links: cost N * (W * (R + H) + N * R) per example,
# b = 4, N = 128, W = 8, R = 2, H = 1 -> 4 * 35,840 / 2**15 = 4 tasks
# (backward twice that).
B, N, W, R, H = 4, 128, 8, 2, 1


def test_memory_step_kernel_matches_the_numpy_reference():
  rng = np.random.default_rng(0)
  iface = random_interface(rng, B, R, H, W)
  state = random_state(rng, B, N, W, R, H)
  fused = lambda i, s: memory_step(i, s, backend="fused")
  assert "DncMemoryStepForwardF64" in hlo(fused, iface, state)
  words, new_state = jax.jit(fused)(iface, state)
  for i in range(B):
    want_words, want_state = ref.step(example(iface, i),
                                      state_to_reference(state, i))
    np.testing.assert_allclose(np.asarray(words[i]), want_words, atol=1e-10)
    got = state_to_reference(new_state, i)
    for key, value in want_state.items():
      np.testing.assert_allclose(got[key], value, atol=1e-10, err_msg=key)


def test_memory_step_backward_kernel_matches_xla_gradients():
  # The reference has no gradients; XLA's own autodiff of the library's
  # XLA path is the independent check here (test_gradients.py checks that
  # path against finite differences).
  rng = np.random.default_rng(1)
  iface = random_interface(rng, B, R, H, W)
  state = random_state(rng, B, N, W, R, H)
  weights = rng.normal(size=(B, R, W))

  def loss(backend):
    return lambda i, s: jnp.sum(
        memory_step(i, s, backend=backend)[0] * weights)

  grad_fused = jax.grad(loss("fused"), argnums=(0, 1))
  assert "DncMemoryStepBackwardF64" in hlo(grad_fused, iface, state)
  got = jax.tree.leaves(jax.jit(grad_fused)(iface, state))
  want = jax.tree.leaves(
      jax.jit(jax.grad(loss("xla"), argnums=(0, 1)))(iface, state))
  assert len(got) == len(want)
  for x, y in zip(got, want):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=1e-9)


# Sparse link, indexed storage: the step kernel's cost H * N * K * 4 +
# R * N * (W + 2HK) per example, 8,192 + 24,576 -> 4 * 32,768 / 2**15 = 4
# tasks; its VJP's H * N * K * 4 + R * N * (2W + 4HK) -> 7 tasks.
SB, SN, SW, SR, SH, SK = 4, 512, 16, 2, 1, 4


def sparse_config():
  return DNCConfig(output_size=1, memory_size=SN, word_size=SW,
                   num_reads=SR, num_writes=SH, link_sparsity=SK,
                   link_storage="indexed")


def fused(iface, state):
  return memory_step(iface, state, backend="fused")


def check_against_reference(iface, state, refs, atol):
  """One kernel step and one reference step per example; the new refs."""
  text = hlo(fused, iface, state)
  assert "DncSparseLinkStep" in text
  words, state = jax.jit(fused)(iface, state)
  iface64 = jax.tree.map(lambda x: np.asarray(x, np.float64), iface)
  for i in range(SB):
    want_words, refs[i] = ref.step(example(iface64, i), refs[i], SK)
    np.testing.assert_allclose(np.asarray(words[i]), want_words, atol=atol)
    got = state_to_reference(state, i)
    for key, value in refs[i].items():
      np.testing.assert_allclose(got[key], value, atol=atol, err_msg=key)
  return state, refs


def test_sparse_link_kernels_match_the_numpy_reference_f64_and_f32():
  rng = np.random.default_rng(0)
  state = initial_access_state(sparse_config(), SB, np.float64)
  refs = [state_to_reference(state, i) for i in range(SB)]
  for _ in range(3):
    # Sharp interfaces concentrate writes, so links survive the 1/K cut.
    iface = random_interface(rng, SB, SR, SH, SW, sharp=3.0)
    state, refs = check_against_reference(iface, state, refs, 1e-10)
  assert sum(np.count_nonzero(r["link"]) for r in refs) > 0  # links compared
  # float32: one step from that state rounded to float32, the reference
  # fed the same (rounded) inputs in float64. Usage is reset to well
  # separated values, so float32 rounding cannot reorder the allocation's
  # sort (a discontinuity, not an error). Tolerance 1e-5 absolute on O(1)
  # weights, words, memory: float32 arithmetic over N = 512 slots.
  usage = rng.permutation(np.linspace(0.05, 0.95, SN))[None].repeat(SB, 0)
  state = jax.tree.map(
      lambda x: (np.asarray(x, np.float32)
                 if jnp.issubdtype(x.dtype, jnp.floating) else x),
      state._replace(usage=usage))
  refs = [jax.tree.map(lambda x: np.asarray(x, np.float64),
                       state_to_reference(state, i)) for i in range(SB)]
  iface = jax.tree.map(lambda x: np.asarray(x, np.float32),
                       random_interface(rng, SB, SR, SH, SW, sharp=3.0))
  assert "F32" in hlo(fused, iface, state).split("DncSparseLinkStep")[1][:3]
  check_against_reference(iface, state, refs, 1e-5)


def test_sparse_link_vjp_kernels_match_xla_gradients():
  # The threaded VJP kernels against XLA's autodiff of the XLA path (as for
  # the memory step's backward kernel), from a state with links.
  rng = np.random.default_rng(2)
  state = initial_access_state(sparse_config(), SB, np.float64)
  xla_step = jax.jit(lambda i, s: memory_step(i, s, backend="xla")[1])
  for _ in range(2):
    state = xla_step(random_interface(rng, SB, SR, SH, SW, sharp=3.0), state)
  assert np.count_nonzero(state.linkage.link_values) > 0
  iface = random_interface(rng, SB, SR, SH, SW, sharp=3.0)
  weights = rng.normal(size=(SB, SR, SW))

  def loss(backend):
    def f(iface, values, precedence, memory, read_weights):
      s = state._replace(memory=memory, read_weights=read_weights,
                         linkage=state.linkage._replace(
                             link_values=values,
                             precedence_weights=precedence))
      words, new = memory_step(iface, s, backend=backend)
      return jnp.sum(words * weights) + jnp.sum(
          new.linkage.link_values ** 2)
    return f

  args = (iface, state.linkage.link_values, state.linkage.precedence_weights,
          state.memory, state.read_weights)
  grad_fused = jax.grad(loss("fused"), argnums=tuple(range(5)))
  text = hlo(grad_fused, *args)
  assert "DncSparseLinkStepVjp" in text
  got = jax.tree.leaves(jax.jit(grad_fused)(*args))
  want = jax.tree.leaves(
      jax.jit(jax.grad(loss("xla"), argnums=tuple(range(5))))(*args))
  assert len(got) == len(want)
  for x, y in zip(got, want):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=1e-9)
