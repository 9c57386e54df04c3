"""One tie rule for every sort and top-k, in the kernels as in XLA.

Equal values keep the lower index first, equality meaning what XLA's own op
means: jnp.argsort treats -0.0 and +0.0 as equal and puts NaNs last;
jax.lax.top_k ranks by the IEEE total order (-0.0 below +0.0). The kernels
(csrc/common.h: SortKey, TopKKey) rank the same way, so at exact ties the
kernel and the XLA path pick the same entries and their states never part.
"""

import functools
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dnc_jax import (DNCConfig, cpu_kernels, initial_access_state,
                     memory_step, parse_interface, sorting)

pytestmark = pytest.mark.skipif(cpu_kernels.compiler() is None,
                                reason="no C++ compiler for the CPU kernels")

ROW = 4096  # rows this long go to the kernels (sorting._KERNEL_MIN_SIZE)


def tied_rows(dtype, rng):
  """Rows of few distinct values: zeros of both signs, NaNs, infinities."""
  pool = np.array([0.0, -0.0, 1.0, -1.0, 0.5, np.inf, -np.inf, np.nan,
                   -np.nan], dtype)
  return pool[rng.integers(0, len(pool), size=(3, ROW))]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_argsort_kernel_breaks_ties_as_jnp_argsort(dtype):
  x = tied_rows(dtype, np.random.default_rng(0))
  assert "DncArgsort" in jax.jit(sorting.argsort).lower(x).as_text()
  got = jax.jit(sorting.argsort)(x)
  want = jnp.argsort(jnp.asarray(x), axis=-1, stable=True)
  np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("k", [1, 5, 700, ROW])
def test_top_k_kernel_breaks_ties_as_lax_top_k(dtype, k):
  rng = np.random.default_rng(k)
  x = tied_rows(dtype, rng)
  x[:, rng.integers(0, ROW, size=50)] = np.inf  # ties at the k-th place
  top_k = jax.jit(lambda x: sorting.top_k(x, k)[1])
  assert "DncTopK" in top_k.lower(x).as_text()
  np.testing.assert_array_equal(top_k(x),
                                jax.lax.top_k(jnp.asarray(x), k)[1])


def test_top_k_kernel_ranks_minus_zero_below_plus_zero():
  x = np.full((1, ROW), -1.0)
  x[0, :3] = -0.0
  x[0, 10:13] = 0.0
  got = sorting.top_k(x, 4)[1]
  np.testing.assert_array_equal(got, [[10, 11, 12, 0]])
  np.testing.assert_array_equal(got, jax.lax.top_k(x, 4)[1])


# --- the memory step at exact ties -------------------------------------------

B, N, W, R, H, K = 2, 16, 4, 2, 1, 4


def config(link):
  return DNCConfig(output_size=1, memory_size=N, word_size=W, num_reads=R,
                   num_writes=H, link_sparsity=K if link == "indexed" else None,
                   link_storage="indexed")


def tied_case(link, allocate):
  """A step whose ranked quantities tie exactly at the K-th place.

  Usage takes 3 distinct values over 16 slots (the allocation's sort);
  the precedence takes 2 (its top-K); memory rows repeat so the content
  weights, and with `allocate` 0 the write weights, tie (their top-K: 8
  tied for K = 4 places).
  """
  cfg = config(link)
  rng = np.random.default_rng(0)
  state = initial_access_state(cfg, B, jnp.float64)
  rows = rng.normal(size=(B, 2, W))
  memory = rows[:, np.arange(N) % 2]
  usage = np.array([0.5, 0.25, 0.25, 0.75] * 4)[None].repeat(B, 0)
  precedence = np.where(np.arange(N) % 3 == 0, 0.05, 0.02)
  precedence = np.broadcast_to(precedence, (B, H, N))
  # A link from each slot to the next, above the 1/K cut: how it decays
  # shows which of the tied write weights the top-K kept.
  nxt = (np.arange(N) + 1) % N
  if link == "indexed":
    columns = np.zeros((B, H, N, K), np.int32)
    columns[..., 0] = nxt
    values = np.zeros((B, H, N, K))
    values[..., 0] = 0.5
    linkage = state.linkage._replace(link_indices=jnp.asarray(columns),
                                     link_values=jnp.asarray(values))
  else:
    dense = np.zeros((B, H, N, N))
    dense[..., np.arange(N), nxt] = 0.5
    linkage = state.linkage._replace(link=jnp.asarray(dense))
  linkage = linkage._replace(precedence_weights=jnp.asarray(precedence))
  state = state._replace(memory=jnp.asarray(memory),
                         usage=jnp.asarray(usage), linkage=linkage)
  iface = parse_interface(jnp.asarray(rng.normal(size=(B, cfg.interface_size))),
                          cfg)
  gate = jnp.full((B, H), float(allocate))
  iface = iface._replace(allocation_gates=gate, write_gates=jnp.ones((B, H)),
                         free_gates=jnp.zeros((B, R)),
                         write_keys=jnp.asarray(rows[:, :1]))
  return iface, state


def assert_same_step(iface, state, atol=1e-12):
  want = jax.jit(functools.partial(memory_step, backend="xla"))(iface, state)
  got = jax.jit(functools.partial(memory_step, backend="fused"))(iface, state)
  for x, y in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
    x, y = np.asarray(x), np.asarray(y)
    if np.issubdtype(y.dtype, np.integer):
      np.testing.assert_array_equal(x, y)
    else:
      np.testing.assert_allclose(x, y, atol=atol, rtol=0)
  return got


@pytest.mark.parametrize("link", ["indexed", "dense"])
@pytest.mark.parametrize("allocate", [0, 1])
def test_memory_step_at_exact_ties_equals_the_xla_path(link, allocate):
  iface, state = tied_case(link, allocate)
  # The ties are exact: 8 slots share the lowest usage, 6 the top
  # precedence; the write weights tie too without allocation.
  assert np.sum(state.usage[0] == state.usage[0].min()) == 8
  _, new = assert_same_step(iface, state)
  if not allocate:
    w = np.asarray(new.write_weights)[0, 0]
    assert np.sum(w == w.max()) == N // 2
  # And on from there, where the link holds the tied entries.
  for _ in range(3):
    _, state = assert_same_step(iface, new)
    new = state


# --- long runs ---------------------------------------------------------------

STEPS = 2000


@pytest.mark.parametrize("link", ["indexed", "dense"])
def test_2000_steps_agree_step_by_step(link):
  """Each step from one shared state: kernel and XLA agree to 1e-9.

  The run carries on from the kernel's state on even steps and from XLA's
  on odd ones, so it tests the agreement of every step, not the drift of
  two free-running paths (chaotic: see docs/kernels.md). It starts from the
  all-zero state, where usage, precedence and link values all tie.
  """
  cfg = config(link)
  state = initial_access_state(cfg, B, jnp.float64)
  rng = np.random.default_rng(0)
  vectors = jnp.asarray(rng.normal(size=(STEPS, B, cfg.interface_size)) *
                        rng.choice([0.5, 2.0, 8.0], size=(STEPS, 1, 1)))

  @jax.jit
  def both(v, s):
    iface = parse_interface(v, cfg)
    want = memory_step(iface, s, backend="xla")
    got = memory_step(iface, s, backend="fused")
    floats = [jnp.max(jnp.abs(x - y)) for x, y in zip(
        jax.tree.leaves(got), jax.tree.leaves(want))
              if jnp.issubdtype(y.dtype, jnp.floating)]
    same_columns = jnp.all(jnp.stack([jnp.all(x == y) for x, y in zip(
        jax.tree.leaves(got), jax.tree.leaves(want))
                                      if jnp.issubdtype(y.dtype, jnp.integer)]
                                     + [jnp.bool_(True)]))
    return jnp.max(jnp.stack(floats)), same_columns, got[1], want[1]

  start = time.perf_counter()
  for t in range(STEPS):
    difference, same_columns, got, want = both(vectors[t], state)
    assert bool(same_columns), f"step {t}: the link columns differ"
    assert float(difference) <= 1e-9, f"step {t}: differs by {difference}"
    state = got if t % 2 == 0 else want
  print(f"{STEPS} steps ({link}): {time.perf_counter() - start:.1f} s")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sparse_link_step_gradients_at_exact_ties_equal_the_xla_path(dtype):
  """DncSparseLinkStep[Vjp] at ties in every top-K it takes.

  The write weights tie 8 ways for K = 4 places, the precedence 6 ways,
  stored link values tie (0.5 on each slot's successor), and the new
  candidates tie with each other: the kernel must keep the entries XLA's
  top_k keeps, so its values and the gradients through them are the XLA
  path's.
  """
  from dnc_jax.links import indexed
  rng = np.random.default_rng(3)
  heads, reads = 2, 3
  as_float = lambda x: jnp.asarray(x, dtype)
  columns = np.zeros((B, heads, N, K), np.int32)
  columns[..., 0] = (np.arange(N) + 1) % N
  values = np.zeros((B, heads, N, K))
  values[..., 0] = 0.5
  precedence = np.broadcast_to(np.where(np.arange(N) % 3 == 0, 0.05, 0.02),
                               (B, heads, N))
  write = np.broadcast_to(np.where(np.arange(N) % 2 == 0, 0.1, 0.0125),
                          (B, heads, N))
  prev_read = np.full((B, reads, N), 1.0 / N)
  content = rng.dirichlet(np.ones(N), size=(B, reads))
  modes = rng.dirichlet(np.ones(1 + 2 * heads), size=(B, reads))
  memory = rng.normal(size=(B, N, W))
  operands = tuple(as_float(x) for x in (values, precedence, write, prev_read,
                                         content, modes, memory))
  step = lambda backend: lambda *ops: indexed.link_step(
      jnp.asarray(columns), *ops, backend=backend)
  want, pull_want = jax.vjp(jax.jit(step("xla")), *operands)
  got, pull_got = jax.vjp(jax.jit(step("auto")), *operands)
  np.testing.assert_array_equal(got.indices, want.indices)
  atol = 1e-12 if dtype == np.float64 else 1e-6
  for x, y in zip(got[1:], want[1:]):
    np.testing.assert_allclose(x, y, atol=atol, rtol=0)
  assert np.count_nonzero(got.values) > 0
  cotangent = jax.tree.map(
      lambda x: (as_float(rng.normal(size=x.shape))
                 if jnp.issubdtype(x.dtype, jnp.floating)
                 else np.zeros(x.shape, jax.dtypes.float0)), want)
  for x, y in zip(pull_got(cotangent), pull_want(cotangent)):
    np.testing.assert_allclose(x, y, atol=10 * atol, rtol=0)
  text = jax.jit(step("auto")).lower(*operands).as_text()
  assert "DncSparseLinkStep" in text
