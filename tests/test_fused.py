"""The fused CPU kernel against the XLA path: values, gradients, transforms."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from helpers import random_interface, random_state
from dnc_jax import (DNCConfig, cpu_kernels, fused, initial_access_state,
                     memory_step)

# Skipped only where no compiler exists; with one, a kernel that fails to
# build fails these tests.
pytestmark = pytest.mark.skipif(cpu_kernels.compiler() is None,
                                reason="no C++ compiler for the CPU kernels")

SHAPES = [  # b, n, w, r, h, links
    (2, 6, 3, 2, 1, True),
    (2, 7, 4, 4, 3, True),
    (3, 5, 4, 1, 1, True),
    (2, 6, 4, 2, 2, False),
    # The dense link's passes take rows in blocks of four, then the rest:
    # N = 8 is blocks only, N = 3 the rest only (the others mix both).
    (2, 8, 3, 3, 2, True),
    (2, 3, 2, 2, 1, True),
]
# The default run keeps several heads, no links and the rows-left-over
# case; the other shapes are `slow` (CI time).
_DEFAULT_SHAPES = {(2, 7, 4, 4, 3, True), (2, 6, 4, 2, 2, False),
                   (2, 3, 2, 2, 1, True)}
SHAPE_PARAMS = [s if s in _DEFAULT_SHAPES
                else pytest.param(s, marks=pytest.mark.slow) for s in SHAPES]


def case(shape, seed=0):
  b, n, w, r, h, links = shape
  rng = np.random.default_rng(seed)
  iface = random_interface(rng, b, r, h, w, links=links)
  state = random_state(rng, b, n, w, r, h)
  if not links:
    state = state._replace(linkage=None)
  return iface, state, rng


def xla(i, s):
  return memory_step(i, s, backend="xla")


def kernel(i, s):
  return memory_step(i, s, backend="fused")


def assert_close(a, b, atol):
  leaves_a, leaves_b = jax.tree.leaves(a), jax.tree.leaves(b)
  assert len(leaves_a) == len(leaves_b)
  for x, y in zip(leaves_a, leaves_b):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=atol,
                               rtol=0)


@pytest.mark.parametrize("shape", SHAPE_PARAMS, ids=str)
def test_values_and_gradients_equal_the_xla_path(shape):
  iface, state, rng = case(shape)
  want, pull_want = jax.vjp(jax.jit(xla), iface, state)
  got, pull_got = jax.vjp(jax.jit(kernel), iface, state)
  assert jax.tree.structure(got) == jax.tree.structure(want)
  assert_close(got, want, 1e-12)
  cotangent = jax.tree.map(lambda x: rng.normal(size=np.shape(x)), want)
  grads_want, grads_got = pull_want(cotangent), pull_got(cotangent)
  assert jax.tree.structure(grads_got) == jax.tree.structure(grads_want)
  assert_close(grads_got, grads_want, 1e-11)


def test_check_grads_through_the_kernel():
  iface, state, _ = case(SHAPES[1], seed=3)

  # The previous write weights take no gradient through usage (by design),
  # which finite differences would see: hold them fixed.
  def step(iface, memory, read_weights, linkage, usage):
    words, new = kernel(iface, state._replace(
        memory=memory, read_weights=read_weights, linkage=linkage,
        usage=usage))
    return words, new.memory, new.usage, new.linkage.link, new.read_weights

  check_grads(jax.jit(step), (iface, state.memory, state.read_weights,
                              state.linkage, state.usage), order=1,
              modes=("rev",), atol=1e-5, rtol=1e-5, eps=1e-6)


def test_float32_matches_float64_closely():
  iface, state, _ = case(SHAPES[0])
  f32 = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), (iface, state))
  got = jax.jit(kernel)(*f32)
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(got))
  assert_close(got, jax.jit(xla)(iface, state), 1e-5)


def test_vmap_and_jit_over_the_kernel():
  iface, state, _ = case(SHAPES[0])
  stacked = jax.tree.map(lambda x: np.stack([x, 0.5 * x]), (iface, state))
  batched = jax.jit(jax.vmap(kernel))(*stacked)
  for k in range(2):
    single = jax.jit(xla)(*jax.tree.map(lambda x: x[k], stacked))
    assert_close(jax.tree.map(lambda x: x[k], batched), single, 1e-12)


def test_auto_uses_the_kernel_on_cpu_and_agrees():
  iface, state, _ = case(SHAPES[1])
  lowered = jax.jit(memory_step).lower(iface, state).as_text()
  assert "DncMemoryStepForward" in lowered
  assert "DncMemoryStepForward" not in jax.jit(xla).lower(
      iface, state).as_text()
  assert_close(jax.jit(memory_step)(iface, state), jax.jit(xla)(iface, state),
               1e-12)


def test_zero_state_gives_finite_gradients():
  config = DNCConfig(output_size=1, memory_size=6, word_size=3, num_reads=2)
  state = initial_access_state(config, 2, jnp.float64)
  iface, _, _ = case((2, 6, 3, 2, 1, True))
  grads = jax.jit(jax.grad(lambda i, s: jnp.sum(kernel(i, s)[0] ** 2),
                           argnums=(0, 1)))(iface, state)
  assert all(np.all(np.isfinite(np.asarray(g))) for g in jax.tree.leaves(grads))


def sparse_case(storage, seed=0):
  """A state a few steps in with the sparse link (K = 3), and an interface."""
  b, n, w, r, h = 2, 7, 4, 3, 2
  rng = np.random.default_rng(seed)
  config = DNCConfig(output_size=1, memory_size=n, word_size=w, num_reads=r,
                     num_writes=h, link_sparsity=3, link_storage=storage)
  state = initial_access_state(config, b, jnp.float64)
  k = None if storage == "indexed" else 3
  step = jax.jit(lambda i, s: memory_step(i, s, link_sparsity=k,
                                          backend="xla")[1])
  for _ in range(4):
    # Sharp interfaces concentrate writes, so links survive the 1/K cut.
    state = step(random_interface(rng, b, r, h, w, sharp=3.0), state)
  return random_interface(rng, b, r, h, w, sharp=3.0), state, k, rng


def floats(tree):
  return [x for x in jax.tree.leaves(tree)
          if jnp.issubdtype(jnp.asarray(x).dtype, jnp.floating)]


@pytest.mark.parametrize("storage,seed", [("indexed", 0), ("indexed", 1),
                                          ("indexed", 2), ("dense", 0)])
def test_sparse_link_kernels_equal_the_xla_path(storage, seed):
  # Indexed storage: the update and reads kernels; dense storage: the fused
  # kernel without links and XLA's dense sparse-link update around it.
  iface, state, k, rng = sparse_case(storage, seed)
  assert np.count_nonzero(floats(state.linkage)[0]) > 0  # links exist
  step = lambda backend: lambda i, s: memory_step(i, s, link_sparsity=k,
                                                  backend=backend)
  want, pull_want = jax.vjp(jax.jit(step("xla")), iface, state)
  got, pull_got = jax.vjp(jax.jit(step("fused")), iface, state)
  assert jax.tree.structure(got) == jax.tree.structure(want)
  for x, y in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=1e-12)
  cotangent = jax.tree.map(
      lambda x: (rng.normal(size=x.shape)
                 if jnp.issubdtype(x.dtype, jnp.floating)
                 else np.zeros(x.shape, jax.dtypes.float0)), want)
  grads_want, grads_got = floats(pull_want(cotangent)), floats(
      pull_got(cotangent))
  assert len(grads_got) == len(grads_want)
  for x, y in zip(grads_got, grads_want):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=1e-11)
  lowered = jax.jit(step("auto")).lower(iface, state).as_text()
  assert "DncMemoryStepForward" in lowered
  if storage == "indexed":  # the link's part: one kernel, none of the old
    assert "DncSparseLinkStep" in lowered
    assert "DncSparseLinkUpdate" not in lowered
    assert "DncSparseReadOut" not in lowered


def link_step_case(dtype, k, seed=0):
  """Operands of indexed.link_step after a few XLA steps: H = 2, R = 3."""
  from dnc_jax import addressing
  from dnc_jax.links import indexed
  b, n, w, r, h = 3, 7, 4, 3, 2
  rng = np.random.default_rng(seed)
  as_float = lambda x: jnp.asarray(x, dtype)
  indices = jnp.zeros((b, h, n, k), jnp.int32)
  values = jnp.zeros((b, h, n, k), dtype)
  precedence = jnp.zeros((b, h, n), dtype)
  # Sharp write weights concentrate, so links survive the 1/K cut.
  sharp = lambda *shape: jax.nn.softmax(as_float(4 * rng.normal(size=shape)))
  update = jax.jit(lambda *a: indexed.update(*a, backend="xla"))
  for _ in range(4):
    write = 0.9 * sharp(b, h, n)
    indices, values = update(indices, values, precedence, write)
    precedence = jax.jit(addressing.precedence_update)(precedence, write)
  operands = (values, precedence, 0.9 * sharp(b, h, n), sharp(b, r, n),
              sharp(b, r, n), jax.nn.softmax(as_float(rng.normal(
                  size=(b, r, 1 + 2 * h)))), as_float(rng.normal(
                      size=(b, n, w))))
  return indices, operands, rng


@pytest.mark.parametrize("dtype,atol", [(np.float64, 1e-12),
                                        (np.float32, 2e-6)])
@pytest.mark.parametrize("k", [1, 3, 7])  # K = 1 and K = N = 7 the edges
def test_sparse_link_step_kernel_equals_the_xla_path(dtype, atol, k):
  # DncSparseLinkStep[Vjp] against the XLA path: the new link, the read
  # weights and words, and every float operand's gradient.
  from dnc_jax.links import indexed
  indices, operands, rng = link_step_case(dtype, k)
  assert np.count_nonzero(operands[0]) > 0  # links exist
  step = lambda backend: lambda *ops: indexed.link_step(indices, *ops,
                                                        backend=backend)
  want, pull_want = jax.vjp(jax.jit(step("xla")), *operands)
  got, pull_got = jax.vjp(jax.jit(step("auto")), *operands)
  np.testing.assert_array_equal(got.indices, want.indices)
  for x, y in zip(got[1:], want[1:]):
    assert x.dtype == dtype
    np.testing.assert_allclose(x, y, atol=atol, rtol=0)
  cotangent = jax.tree.map(
      lambda x: (jnp.asarray(rng.normal(size=x.shape), dtype)
                 if jnp.issubdtype(x.dtype, jnp.floating)
                 else np.zeros(x.shape, jax.dtypes.float0)), want)
  for x, y in zip(pull_got(cotangent), pull_want(cotangent)):
    assert x.dtype == dtype
    np.testing.assert_allclose(x, y, atol=10 * atol, rtol=0)
  lowered = jax.jit(lambda *ops: jax.vjp(step("auto"), *ops)[1](
      cotangent)).lower(*operands).as_text()
  assert "DncSparseLinkStepVjp" in lowered
  assert "DncSparseLinkUpdate" not in lowered
  assert "DncSparseReadOut" not in lowered


def test_unsupported_settings_are_refused_clearly():
  iface, state, _ = case(SHAPES[0])
  f16 = jax.tree.map(lambda x: jnp.asarray(x, jnp.float16), (iface, state))
  with pytest.raises(ValueError, match="needs float32 or float64"):
    memory_step(*f16, backend="fused")
  with pytest.raises(ValueError, match="needs float32 or float64"):
    memory_step(*f16, link_sparsity=2, backend="fused")
  with pytest.raises(ValueError, match="backend must be one of"):
    memory_step(iface, state, backend="gpu")
  with pytest.raises(ValueError, match="memory_backend must be one of"):
    DNCConfig(output_size=1, memory_backend="cuda")


def test_check_grads_through_the_sparse_link_kernels():
  from dnc_jax.links import indexed as sparse_link
  _, state, _, _ = sparse_case("indexed", seed=5)
  linkage = state.linkage
  rng = np.random.default_rng(7)
  write_weights = jax.nn.softmax(
      3.0 * rng.normal(size=linkage.precedence_weights.shape))

  def update_values(values, precedence, write):
    return sparse_link.update(linkage.link_indices, values, precedence,
                              write)[1]

  check_grads(jax.jit(update_values),
              (linkage.link_values, linkage.precedence_weights,
               write_weights), order=1, modes=("rev",),
              atol=1e-5, rtol=1e-5, eps=1e-6)

  num_writes = linkage.link_values.shape[-3]
  read_modes = jax.nn.softmax(rng.normal(
      size=state.read_weights.shape[:-1] + (1 + 2 * num_writes,)))
  content = jax.nn.softmax(2.0 * rng.normal(size=state.read_weights.shape))

  def read_out(values, prev_read_weights, content, read_modes, memory):
    return sparse_link.read_out(linkage.link_indices, values,
                                prev_read_weights, content, read_modes,
                                memory)

  args = (linkage.link_values, state.read_weights, content, read_modes,
          state.memory)
  check_grads(jax.jit(read_out), args, order=1, modes=("rev",), atol=1e-5,
              rtol=1e-5, eps=1e-6)
  assert "DncSparseReadOut" in jax.jit(read_out).lower(*args).as_text()
  for got, want in zip(jax.jit(read_out)(*args), jax.jit(
      lambda *a: sparse_link.read_out(linkage.link_indices, *a,
                                      backend="xla"))(*args)):
    np.testing.assert_allclose(got, want, atol=1e-12)
  lowered = jax.jit(update_values).lower(
      linkage.link_values, linkage.precedence_weights, write_weights).as_text()
  assert "DncSparseLinkUpdate" in lowered


def test_sparse_link_kernels_refuse_out_of_range_columns():
  from dnc_jax.links import indexed as sparse_link
  _, state, _, _ = sparse_case("indexed")
  linkage = state.linkage
  bad = linkage.link_indices.at[0, 0, 0, 0].set(linkage.link_indices.shape[-2])
  with pytest.raises(Exception, match=r"sparse link update: a stored column "
                     r"is outside \[0, N\)"):
    jax.block_until_ready(sparse_link.update(
        bad, linkage.link_values, linkage.precedence_weights,
        state.write_weights))
  num_writes = linkage.link_values.shape[-3]
  modes = np.full(state.read_weights.shape[:-1] + (1 + 2 * num_writes,), 0.2)
  with pytest.raises(Exception, match=r"sparse link read-out: a stored "
                     r"column is outside \[0, N\)"):
    jax.block_until_ready(sparse_link.read_out(
        bad, linkage.link_values, state.read_weights, state.read_weights,
        modes, state.memory))
  with pytest.raises(Exception, match=r"sparse link step: a stored column "
                     r"is outside \[0, N\)"):
    jax.block_until_ready(sparse_link.link_step(
        bad, linkage.link_values, linkage.precedence_weights,
        state.write_weights, state.read_weights, state.read_weights, modes,
        state.memory))
