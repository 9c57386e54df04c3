"""The DNC core under jit, vmap, hk.dynamic_unroll and grad."""

import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dnc_jax import DNC, DNCConfig, DNCState, clip_gradient

T, B, X = 50, 3, 5


def small_config(**kw):
  base = dict(output_size=4, memory_size=8, word_size=6, num_reads=2,
              hidden_size=16)
  base.update(kw)
  return DNCConfig(**base)


def unroll_fn(config):
  def fn(inputs):
    core = DNC(config)
    return hk.dynamic_unroll(core, inputs, core.initial_state(
        inputs.shape[1], dtype=inputs.dtype))
  return hk.without_apply_rng(hk.transform(fn))


def loop_fn(config):
  def fn(inputs):
    core = DNC(config)
    state = core.initial_state(inputs.shape[1], dtype=inputs.dtype)
    outputs = []
    for t in range(inputs.shape[0]):
      out, state = core(inputs[t], state)
      outputs.append(out)
    return jnp.stack(outputs), state
  return hk.without_apply_rng(hk.transform(fn))


def inputs_for(seed=0, t=T, b=B):
  return jax.random.normal(jax.random.PRNGKey(seed), (t, b, X), jnp.float32)


CONFIGS = {
    "lstm": small_config(),
    "deep_lstm": small_config(controller="deep_lstm", num_layers=2,
                              num_writes=2),
    "feedforward": small_config(controller="feedforward", num_layers=2),
    "sparse_indexed": small_config(link_sparsity=2),
    "sparse_dense": small_config(link_sparsity=2, link_storage="dense"),
    "no_links": small_config(use_temporal_links=False),
    "softplus": small_config(strength_squash="softplus", clip_value=0),
}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_jitted_unroll_agrees_with_python_loop(name):
  # Float64: the allocation sort is discontinuous where usages tie, so over
  # 50 steps float32 rounding differences between a compiled and an
  # op-by-op run can pick different slots; float64 keeps them apart.
  config = CONFIGS[name]
  x = inputs_for().astype(jnp.float64)
  unroll, loop = unroll_fn(config), loop_fn(config)
  params = jax.jit(unroll.init)(jax.random.PRNGKey(1), x)
  out_unroll, state_unroll = jax.jit(unroll.apply)(params, x)
  out_loop, state_loop = loop.apply(params, x)
  assert out_unroll.shape == (T, B, config.output_size)
  assert out_unroll.dtype == jnp.float64
  np.testing.assert_allclose(out_unroll, out_loop, atol=1e-10, rtol=1e-10)
  for a, b in zip(jax.tree.leaves(state_unroll), jax.tree.leaves(state_loop)):
    np.testing.assert_allclose(a, b, atol=1e-10, rtol=1e-10)
  assert np.all(np.isfinite(np.asarray(out_unroll)))


def test_float32_unroll_keeps_float32():
  config = CONFIGS["lstm"]
  x = inputs_for(t=5)
  unroll = unroll_fn(config)
  params = jax.jit(unroll.init)(jax.random.PRNGKey(1), x)
  out, state = jax.jit(unroll.apply)(params, x)
  assert out.dtype == jnp.float32
  assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(state))


@pytest.mark.parametrize("name", ["lstm", "feedforward", "sparse_indexed"])
def test_gradient_through_unroll_is_finite(name):
  config = CONFIGS[name]
  x = inputs_for(t=20)
  unroll = unroll_fn(config)
  params = jax.jit(unroll.init)(jax.random.PRNGKey(1), x)

  def loss(p):
    out, _ = unroll.apply(p, x)
    return jnp.mean(out ** 2)

  grads = jax.jit(jax.grad(loss))(params)
  leaves = jax.tree.leaves(grads)
  assert all(np.all(np.isfinite(np.asarray(g))) for g in leaves)
  assert any(np.any(np.asarray(g) != 0) for g in leaves)


def test_vmap_over_independent_runs_matches_each_run():
  config = CONFIGS["lstm"]
  xs = jnp.stack([inputs_for(seed=s, t=10) for s in range(3)])
  unroll = unroll_fn(config)
  params = jax.jit(unroll.init)(jax.random.PRNGKey(1), xs[0])
  batched, _ = jax.jit(jax.vmap(unroll.apply, in_axes=(None, 0)))(params, xs)
  apply = jax.jit(unroll.apply)
  for s in range(3):
    single, _ = apply(params, xs[s])
    np.testing.assert_allclose(batched[s], single, atol=1e-5, rtol=1e-5)


def test_vmap_over_parameters():
  config = CONFIGS["feedforward"]
  x = inputs_for(t=6)
  unroll = unroll_fn(config)
  keys = jax.random.split(jax.random.PRNGKey(0), 2)
  params = jax.jit(jax.vmap(lambda k: unroll.init(k, x)))(keys)
  outs, _ = jax.jit(jax.vmap(unroll.apply, in_axes=(0, None)))(params, x)
  first = jax.tree.map(lambda p: p[0], params)
  np.testing.assert_allclose(outs[0], jax.jit(unroll.apply)(first, x)[0],
                             atol=1e-5)
  assert not np.allclose(outs[0], outs[1])


def test_second_call_with_equal_shapes_does_not_recompile():
  config = CONFIGS["lstm"]
  unroll = unroll_fn(config)
  traces = []

  @jax.jit
  def run(params, x):
    traces.append(1)
    return unroll.apply(params, x)[0]

  x = inputs_for(t=10)
  params = unroll.init(jax.random.PRNGKey(1), x)
  run(params, x)
  run(params, inputs_for(seed=5, t=10))
  assert len(traces) == 1
  run(params, inputs_for(t=11))
  assert len(traces) == 2


def test_state_structure_and_shapes():
  config = CONFIGS["deep_lstm"]

  def fn(x):
    core = DNC(config)
    state = core.initial_state(B)
    out, new = core(x, state)
    return state, new

  f = hk.without_apply_rng(hk.transform(fn))
  x = jnp.ones((B, X))
  state, new = jax.jit(f.apply)(jax.jit(f.init)(jax.random.PRNGKey(0), x), x)
  assert isinstance(new, DNCState)
  assert jax.tree.structure(state) == jax.tree.structure(new)
  assert new.read_words.shape == (B, 2, 6)
  assert new.access_state.memory.shape == (B, 8, 6)
  assert new.access_state.linkage.link.shape == (B, 2, 8, 8)


def test_return_interface_and_feedforward_state():
  config = CONFIGS["feedforward"]

  def fn(x):
    core = DNC(config, return_interface=True)
    return hk.dynamic_unroll(core, x, core.initial_state(B))

  f = hk.without_apply_rng(hk.transform(fn))
  x = inputs_for(t=4)
  (out, iface), state = jax.jit(f.apply)(
      jax.jit(f.init)(jax.random.PRNGKey(0), x), x)
  assert out.shape == (4, B, 4)
  assert iface.free_gates.shape == (4, B, 2)
  assert iface.read_modes.shape == (4, B, 2, 3)
  np.testing.assert_allclose(iface.read_modes.sum(-1), 1.0, atol=1e-5)
  assert state.controller_state == ()


def test_outputs_are_clipped():
  config = small_config(clip_value=0.5)
  f = unroll_fn(config)
  x = 100.0 * inputs_for(t=5)
  params = jax.jit(f.init)(jax.random.PRNGKey(0), x)
  params = jax.tree.map(lambda p: 50.0 * p, params)
  out, state = jax.jit(f.apply)(params, x)
  assert float(jnp.max(jnp.abs(out))) <= 0.5
  assert float(jnp.max(jnp.abs(state.controller_state.cell))) <= 0.5


def test_clip_gradient():
  g = jax.grad(lambda x: jnp.sum(clip_gradient(x, 1.0) * 5.0))(jnp.ones(3))
  np.testing.assert_allclose(g, 1.0)
  config = small_config(controller_grad_clip=1e-3)
  x = inputs_for(t=5)
  clipped, plain = unroll_fn(config), unroll_fn(small_config())
  params = jax.jit(plain.init)(jax.random.PRNGKey(0), x)

  def grads(f):
    return jax.jit(jax.grad(lambda p: jnp.sum(f.apply(p, x)[0] ** 2)))(params)

  g_clip = grads(clipped)["dnc/~/lstm/linear"]["w"]
  g_plain = grads(plain)["dnc/~/lstm/linear"]["w"]
  assert np.abs(g_clip).sum() < np.abs(g_plain).sum()


def test_bad_inputs_raise_clear_errors():
  config = small_config(input_size=X)

  def fn(x, batch):
    core = DNC(config)
    return core(x, core.initial_state(batch))

  f = hk.without_apply_rng(hk.transform(fn))
  with pytest.raises(ValueError, match=r"shape \[batch, features\]"):
    f.init(jax.random.PRNGKey(0), jnp.ones((2, 3, X)), 3)
  with pytest.raises(ValueError, match="config.input_size = 5"):
    f.init(jax.random.PRNGKey(0), jnp.ones((3, X + 1)), 3)
  with pytest.raises(ValueError, match="batch size 3 but the state was built "
                     "for batch size 4"):
    f.init(jax.random.PRNGKey(0), jnp.ones((3, X)), 4)
  with pytest.raises(ValueError, match="batch_size must be an int >= 1"):
    f.init(jax.random.PRNGKey(0), jnp.ones((3, X)), 0)
  with pytest.raises(TypeError, match="DNCConfig"):
    hk.transform(lambda: DNC({"output_size": 3})).init(None)


# The default run keeps a chunk with a remainder and a scan unroll; the
# rest of the grid is `slow` (CI time).
@pytest.mark.parametrize("chunk,scan_unroll", [
    pytest.param(1, 1, marks=pytest.mark.slow), (4, 1),
    pytest.param(7, 1, marks=pytest.mark.slow),
    pytest.param(50, 1, marks=pytest.mark.slow), (None, 5),
    pytest.param(4, 3, marks=pytest.mark.slow)])
def test_chunked_remat_unroll_equals_plain_unroll(chunk, scan_unroll):
  from dnc_jax import unroll
  config = CONFIGS["lstm"]
  # Float64, as above: rematerialised or unrolled steps compile differently,
  # and float32 rounding can flip the allocation sort where usages tie.
  x = inputs_for(t=12).astype(jnp.float64)

  def build(remat_chunk, scan_unroll=1):
    def fn(inputs):
      core = DNC(config)
      return unroll(core, inputs,
                    core.initial_state(inputs.shape[1], dtype=inputs.dtype),
                    remat_chunk=remat_chunk, scan_unroll=scan_unroll)
    return hk.without_apply_rng(hk.transform(fn))

  plain, chunked = build(None), build(chunk, scan_unroll)
  params = jax.jit(plain.init)(jax.random.PRNGKey(1), x)
  # Both name their parameters alike, so either's init serves the other.
  assert jax.tree.structure(jax.eval_shape(
      chunked.init, jax.random.PRNGKey(1), x)) == jax.tree.structure(params)
  out_plain, state_plain = jax.jit(plain.apply)(params, x)
  out_chunked, state_chunked = jax.jit(chunked.apply)(params, x)
  np.testing.assert_allclose(out_chunked, out_plain, atol=1e-6)
  for a, b in zip(jax.tree.leaves(state_chunked), jax.tree.leaves(state_plain)):
    np.testing.assert_allclose(a, b, atol=1e-6)

  def loss(f, p):
    return jnp.sum(f.apply(p, x)[0] ** 2)

  g_plain = jax.jit(jax.grad(lambda p: loss(plain, p)))(params)
  g_chunked = jax.jit(jax.grad(lambda p: loss(chunked, p)))(params)
  for a, b in zip(jax.tree.leaves(g_chunked), jax.tree.leaves(g_plain)):
    np.testing.assert_allclose(a, b, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("option,value", [("remat_chunk", 0),
                                          ("remat_chunk", 2.0),
                                          ("scan_unroll", 0),
                                          ("scan_unroll", True)])
def test_unroll_rejects_bad_chunks_and_unrolls(option, value):
  from dnc_jax import unroll
  f = hk.transform(lambda x: unroll(DNC(CONFIGS["lstm"]), x,
                                    DNC(CONFIGS["lstm"]).initial_state(B),
                                    **{option: value}))
  with pytest.raises(ValueError, match=f"{option} must be .*an int >= 1"):
    f.init(jax.random.PRNGKey(0), inputs_for(t=3))
