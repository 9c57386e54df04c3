"""The NTM: equations vs the NumPy reference, gradients, behaviours, core."""

import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import ntm_reference as ref
from dnc_jax import ntm
from dnc_jax.ntm import NTM, NTMConfig, NTMInterface, NTMState
from dnc_jax.unroll import unroll as chunked_unroll

B, N, W, R, H, S = 3, 7, 4, 2, 2, 2
TOL = dict(rtol=1e-10, atol=1e-10)
GRAD_TOL = dict(atol=1e-5, rtol=1e-5, eps=1e-6)


def _rng(seed):
  return np.random.default_rng(seed)


def _simplex(rng, *shape):
  x = rng.uniform(size=shape)
  return x / x.sum(axis=-1, keepdims=True)


def _head_args(rng, k=H, n=N, w=W, s=S):
  """Random squashed per-head addressing arguments, batched ``[B, K, ...]``."""
  return dict(memory=rng.normal(size=(B, n, w)),
              prev_weights=_simplex(rng, B, k, n),
              keys=rng.normal(size=(B, k, w)),
              strengths=1.0 + rng.uniform(0, 4, size=(B, k)),
              gates=rng.uniform(size=(B, k)),
              shifts=_simplex(rng, B, k, 2 * s + 1),
              sharpenings=1.0 + rng.uniform(0, 3, size=(B, k)))


def _config(**kw):
  base = dict(output_size=3, memory_size=N, word_size=W, num_reads=R,
              num_writes=H, hidden_size=12, shift_range=S)
  base.update(kw)
  return NTMConfig(**base)


# --- Each equation against the reference -----------------------------------


def test_interpolation_shift_sharpen_match_reference():
  a = _head_args(_rng(0))
  content = np.asarray(ntm.content_weights(a["memory"], a["keys"],
                                           a["strengths"]))
  gated = np.asarray(ntm.interpolate(content, a["prev_weights"], a["gates"]))
  shifted = np.asarray(ntm.circular_shift(gated, a["shifts"]))
  sharp = np.asarray(ntm.sharpen(shifted, a["sharpenings"]))
  for b in range(B):
    for k in range(H):
      c = ref.content(a["memory"][b], a["keys"][b, k], a["strengths"][b, k])
      np.testing.assert_allclose(content[b, k], c, **TOL)
      g = ref.interpolate(c, a["prev_weights"][b, k], a["gates"][b, k])
      np.testing.assert_allclose(gated[b, k], g, **TOL)
      np.testing.assert_allclose(shifted[b, k],
                                 ref.shift(gated[b, k], a["shifts"][b, k]),
                                 **TOL)
      np.testing.assert_allclose(
          sharp[b, k], ref.sharpen(shifted[b, k], a["sharpenings"][b, k]),
          **TOL)


def test_addressing_matches_reference():
  a = _head_args(_rng(1))
  got = np.asarray(ntm.ntm_addressing(**a))
  for b in range(B):
    for k in range(H):
      want = ref.address(a["memory"][b], a["prev_weights"][b, k],
                         a["keys"][b, k], a["strengths"][b, k],
                         a["gates"][b, k], a["shifts"][b, k],
                         a["sharpenings"][b, k])
      np.testing.assert_allclose(got[b, k], want, **TOL)
  np.testing.assert_allclose(got.sum(-1), 1.0, **TOL)


def test_erase_add_and_read_match_reference():
  rng = _rng(2)
  memory = rng.normal(size=(B, N, W))
  write_w = _simplex(rng, B, H, N)
  erase = rng.uniform(size=(B, H, W))
  add = rng.normal(size=(B, H, W))
  read_w = _simplex(rng, B, R, N)
  new_memory = np.asarray(ntm.erase_and_add(memory, write_w, erase, add))
  words = np.asarray(ntm.read_memory(read_w, new_memory))
  for b in range(B):
    m = ref.write(memory[b], write_w[b], erase[b], add[b])
    np.testing.assert_allclose(new_memory[b], m, **TOL)
    np.testing.assert_allclose(words[b], ref.read(m, read_w[b]), **TOL)


def test_parse_matches_reference_and_checks_width():
  config = _config()
  vector = _rng(3).normal(size=(B, config.interface_size))
  parsed = ntm.parse_ntm_interface(vector, config)
  for b in range(B):
    want = ref.parse(vector[b], R, H, W, S)
    for field, value in want.items():
      np.testing.assert_allclose(np.asarray(getattr(parsed, field))[b], value,
                                 **TOL)
  with pytest.raises(ValueError, match="interface_size"):
    ntm.parse_ntm_interface(vector[:, :-1], config)


def test_memory_step_matches_reference_over_many_steps():
  config = _config()
  rng = _rng(4)
  state = NTMState(memory=rng.normal(size=(B, N, W)) * 0.5,
                   read_weights=_simplex(rng, B, R, N),
                   write_weights=_simplex(rng, B, H, N),
                   controller_state=(), read_words=np.zeros((B, R, W)))
  refs = [dict(memory=np.asarray(state.memory[b]),
               read_w=np.asarray(state.read_weights[b]),
               write_w=np.asarray(state.write_weights[b])) for b in range(B)]
  step = jax.jit(lambda v, s: ntm.ntm_memory_step(
      ntm.parse_ntm_interface(v, config), s))
  for _ in range(12):
    vector = rng.normal(size=(B, config.interface_size)) * 2.0
    state = step(vector, state)
    for b in range(B):
      r = refs[b]
      memory, read_w, write_w, words = ref.step(
          ref.parse(vector[b], R, H, W, S), r["memory"], r["read_w"],
          r["write_w"])
      refs[b] = dict(memory=memory, read_w=read_w, write_w=write_w)
      np.testing.assert_allclose(state.memory[b], memory, **TOL)
      np.testing.assert_allclose(state.read_weights[b], read_w, **TOL)
      np.testing.assert_allclose(state.write_weights[b], write_w, **TOL)
      np.testing.assert_allclose(state.read_words[b], words, **TOL)


# --- Gradients --------------------------------------------------------------


def test_addressing_gradient():
  a = _head_args(_rng(5))
  check_grads(lambda *x: ntm.ntm_addressing(*x), tuple(a.values()), order=1,
              modes=("rev",), **GRAD_TOL)


def test_memory_step_gradient():
  config = _config()
  rng = _rng(6)
  vector = rng.normal(size=(B, config.interface_size))
  memory = rng.normal(size=(B, N, W))
  read_w, write_w = _simplex(rng, B, R, N), _simplex(rng, B, H, N)

  def f(vector, memory, read_w, write_w):
    state = NTMState(memory, read_w, write_w, (), jnp.zeros((B, R, W)))
    out = ntm.ntm_memory_step(ntm.parse_ntm_interface(vector, config), state)
    return out.memory, out.read_weights, out.write_weights, out.read_words

  check_grads(f, (vector, memory, read_w, write_w), order=1, modes=("rev",),
              **GRAD_TOL)


# --- Behaviours -------------------------------------------------------------


def _one_hot_shift(offset, s=1):
  shifts = np.zeros((1, 1, 2 * s + 1))
  shifts[..., offset + s] = 1.0
  return shifts


@pytest.mark.parametrize("slot", [0, 3, N - 1])
def test_shift_moves_one_hot_by_one_slot_circularly(slot):
  w = np.eye(N)[slot][None, None]
  up = np.asarray(ntm.circular_shift(w, _one_hot_shift(+1)))
  down = np.asarray(ntm.circular_shift(w, _one_hot_shift(-1)))
  stay = np.asarray(ntm.circular_shift(w, _one_hot_shift(0)))
  np.testing.assert_array_equal(up[0, 0], np.eye(N)[(slot + 1) % N])
  np.testing.assert_array_equal(down[0, 0], np.eye(N)[(slot - 1) % N])
  np.testing.assert_array_equal(stay[0, 0], w[0, 0])


def test_sharpening_with_large_gamma_approaches_argmax():
  w = np.array([[[0.1, 0.35, 0.2, 0.05, 0.15, 0.1, 0.05]]])
  for gamma, tol in [(20.0, 1e-4), (500.0, 1e-12)]:
    sharp = np.asarray(ntm.sharpen(w, np.full((1, 1), gamma)))
    np.testing.assert_allclose(sharp[0, 0], np.eye(N)[np.argmax(w)],
                               atol=tol)
  # float32 with a huge gamma: the log-space form gives no 0/0.
  sharp32 = ntm.sharpen(jnp.asarray(w, jnp.float32), jnp.full((1, 1), 1e4,
                                                               jnp.float32))
  assert np.all(np.isfinite(np.asarray(sharp32)))
  assert np.argmax(sharp32) == np.argmax(w)


def test_sharpening_gamma_one_keeps_a_normalised_weighting():
  w = _simplex(_rng(8), 2, 3, N)
  np.testing.assert_allclose(ntm.sharpen(w, np.ones((2, 3))), w, atol=1e-7)


def test_sharpening_all_zero_weighting_is_uniform_with_finite_gradient():
  zeros = np.zeros((1, 2, N))
  gammas = np.array([[1.0, 3.0]])
  np.testing.assert_allclose(ntm.sharpen(zeros, gammas), 1.0 / N, **TOL)
  grads = jax.grad(lambda w, g: jnp.sum(ntm.sharpen(w, g) ** 2),
                   argnums=(0, 1))(zeros, gammas)
  for g in grads:
    assert np.all(np.isfinite(np.asarray(g)))


def test_interpolation_gate_zero_keeps_previous_and_one_gives_content():
  a = _head_args(_rng(9))
  content = ntm.content_weights(a["memory"], a["keys"], a["strengths"])
  zeros, ones = np.zeros((B, H)), np.ones((B, H))
  np.testing.assert_array_equal(
      ntm.interpolate(content, a["prev_weights"], zeros), a["prev_weights"])
  np.testing.assert_allclose(
      ntm.interpolate(content, a["prev_weights"], ones), content, **TOL)
  # Through the whole addressing, with no shift and γ = 1 (ε-level change).
  a.update(shifts=np.broadcast_to(_one_hot_shift(0, S), (B, H, 2 * S + 1)),
           sharpenings=ones)
  np.testing.assert_allclose(ntm.ntm_addressing(**dict(a, gates=zeros)),
                             a["prev_weights"], atol=1e-7)
  np.testing.assert_allclose(ntm.ntm_addressing(**dict(a, gates=ones)),
                             content, atol=1e-7)


def test_location_only_head_walks_the_memory():
  """Gate 0 and shift +1 each step: a one-hot head visits slots 1, 2, ..."""
  a = _head_args(_rng(10), k=1)
  w = np.eye(N)[None, None, 0].repeat(B, 0)
  for t in range(1, N + 2):
    w = ntm.ntm_addressing(a["memory"], w, a["keys"], a["strengths"],
                           np.zeros((B, 1)),
                           np.broadcast_to(_one_hot_shift(1, S), (B, 1, 5)),
                           np.full((B, 1), 5.0))
    np.testing.assert_allclose(w[:, 0], np.eye(N)[[t % N] * B], atol=1e-9)


# --- The core ---------------------------------------------------------------

T, X = 20, 5


def _loop_fn(config):
  def fn(inputs):
    core = NTM(config)
    state = core.initial_state(inputs.shape[1], dtype=inputs.dtype)
    outputs = []
    for t in range(inputs.shape[0]):
      out, state = core(inputs[t], state)
      outputs.append(out)
    return jnp.stack(outputs), state
  return hk.without_apply_rng(hk.transform(fn))


def _unroll_fn(config, remat_chunk=None, dynamic=True):
  def fn(inputs):
    core = NTM(config)
    state = core.initial_state(inputs.shape[1], dtype=inputs.dtype)
    if dynamic:
      return hk.dynamic_unroll(core, inputs, state)
    return chunked_unroll(core, inputs, state, remat_chunk=remat_chunk)
  return hk.without_apply_rng(hk.transform(fn))


def _assert_trees_close(a, b, **tol):
  jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, **tol), a, b)


@pytest.mark.parametrize("controller", ["lstm", "feedforward"])
def test_jitted_dynamic_unroll_matches_python_loop(controller):
  config = _config(controller=controller)
  x = jnp.asarray(_rng(11).normal(size=(T, B, X)))
  loop, dyn = _loop_fn(config), _unroll_fn(config)
  params = jax.jit(loop.init)(jax.random.PRNGKey(0), x)
  want = loop.apply(params, x)
  got = jax.jit(dyn.apply)(params, x)
  _assert_trees_close(got, want, **TOL)
  out, state = got
  assert out.shape == (T, B, config.output_size)
  assert state.memory.shape == (B, N, W)
  assert state.read_weights.shape == (B, R, N)
  assert state.write_weights.shape == (B, H, N)
  assert state.read_words.shape == (B, R, W)
  np.testing.assert_allclose(state.read_weights.sum(-1), 1.0, **TOL)


def test_vmap_over_independent_runs_matches_each_run():
  config = _config()
  xs = jnp.asarray(_rng(12).normal(size=(4, T, B, X)))
  dyn = _unroll_fn(config)
  params = jax.jit(dyn.init)(jax.random.PRNGKey(1), xs[0])
  batched = jax.jit(jax.vmap(dyn.apply, in_axes=(None, 0)))(params, xs)
  single = jax.jit(dyn.apply)
  for i in range(4):
    _assert_trees_close(jax.tree.map(lambda v: v[i], batched),
                        single(params, xs[i]), **TOL)


@pytest.mark.slow
@pytest.mark.parametrize("remat_chunk", [6])  # 3 chunks and a remainder
def test_works_with_chunked_remat_unroll(remat_chunk):
  config = _config()
  x = jnp.asarray(_rng(13).normal(size=(T, B, X)))
  plain, chunked = _unroll_fn(config), _unroll_fn(config, remat_chunk,
                                                  dynamic=False)
  params = jax.jit(plain.init)(jax.random.PRNGKey(2), x)
  _assert_trees_close(jax.jit(chunked.apply)(params, x),
                      jax.jit(plain.apply)(params, x), **TOL)

  def loss(fn, p):
    return jnp.sum(fn.apply(p, x)[0] ** 2)

  _assert_trees_close(jax.jit(jax.grad(lambda p: loss(chunked, p)))(params),
                      jax.jit(jax.grad(lambda p: loss(plain, p)))(params),
                      rtol=1e-9, atol=1e-9)


def test_initial_state_and_zero_initial_weighting():
  config = _config()
  state = hk.transform(lambda: NTM(config).initial_state(2)).apply(
      {}, None)
  np.testing.assert_array_equal(state.read_weights[..., 0], 1.0)
  np.testing.assert_array_equal(state.write_weights.sum(-1), 1.0)
  assert state.memory.dtype == jnp.float32
  zeros_config = config.replace(initial_weighting="zeros")
  x = jnp.asarray(_rng(14).normal(size=(3, B, X)), jnp.float32)
  dyn = _unroll_fn(zeros_config)
  params = jax.jit(dyn.init)(jax.random.PRNGKey(3), x)
  out, state = jax.jit(dyn.apply)(params, x)
  assert np.all(np.isfinite(np.asarray(out)))
  np.testing.assert_allclose(state.write_weights.sum(-1), 1.0, rtol=1e-5)


def test_zero_initial_weighting_never_breaks_slot_symmetry():
  """Why one-hot is the default: from zeros every weighting stays uniform."""
  config = _config(initial_weighting="zeros")
  x = jnp.asarray(_rng(15).normal(size=(6, B, X)))
  dyn = _unroll_fn(config)
  params = jax.jit(dyn.init)(jax.random.PRNGKey(5), x)
  params = jax.tree.map(lambda p: p + 0.5 * jnp.sign(p + 0.1), params)
  _, state = jax.jit(dyn.apply)(params, x)
  np.testing.assert_allclose(state.read_weights, 1.0 / N, rtol=1e-12)
  np.testing.assert_allclose(state.write_weights, 1.0 / N, rtol=1e-12)
  np.testing.assert_allclose(
      state.memory, np.broadcast_to(state.memory[:, :1], (B, N, W)), rtol=1e-12)
  assert np.abs(np.asarray(state.memory)).max() > 1e-3   # it did write


def test_return_interface_and_input_checks():
  config = _config(input_size=X)
  fn = hk.without_apply_rng(hk.transform(
      lambda x: NTM(config, return_interface=True)(
          x, NTM(config).initial_state(B))))
  x = jnp.zeros((B, X))
  params = jax.jit(fn.init)(jax.random.PRNGKey(4), x)
  (_, interface), _ = fn.apply(params, x)
  assert isinstance(interface, NTMInterface)
  assert interface.shifts.shape == (B, R + H, 2 * S + 1)
  with pytest.raises(ValueError, match="input_size"):
    fn.init(jax.random.PRNGKey(4), jnp.zeros((B, X + 1)))
  with pytest.raises(ValueError, match="batch size"):
    fn.init(jax.random.PRNGKey(4), jnp.zeros((B + 1, X)))
  with pytest.raises(TypeError, match="NTMConfig"):
    hk.transform(lambda: NTM(object())).init(None)


def test_weighting_grad_clip_bounds_the_recurrent_gradient_only():
  """Forward unchanged; the gradient into the previous step's weightings
  is clipped element-wise, the other gradients keep their paths."""
  rng = _rng(11)
  inputs = jnp.asarray(rng.normal(size=(T, B, X)), jnp.float32)

  def fn(inputs, read0, write0):
    core = NTM(config)
    state = core.initial_state(inputs.shape[1], dtype=inputs.dtype)
    state = state._replace(read_weights=read0, write_weights=write0)
    outputs, _ = hk.dynamic_unroll(core, inputs, state)
    return outputs

  read0 = jnp.asarray(_simplex(rng, B, R, N), jnp.float32)
  write0 = jnp.asarray(_simplex(rng, B, H, N), jnp.float32)
  results = {}
  for bound in (None, 1e-4):
    config = _config(input_size=X, weighting_grad_clip=bound)
    f = hk.without_apply_rng(hk.transform(fn))
    params = f.init(jax.random.PRNGKey(0), inputs, read0, write0)
    loss = lambda p, r, w: jnp.sum(jnp.sin(f.apply(p, inputs, r, w)))
    results[bound] = (jax.jit(f.apply)(params, inputs, read0, write0),
                      jax.jit(jax.grad(loss, argnums=(1, 2)))(params, read0,
                                                              write0))
  (out, (g_read, g_write)), (out_c, (g_read_c, g_write_c)) = (
      results[None], results[1e-4])
  np.testing.assert_array_equal(out, out_c)
  assert np.max(np.abs(g_read)) > 1e-3 and np.max(np.abs(g_write)) > 1e-3
  assert np.max(np.abs(g_read_c)) <= 1e-4 + 1e-9
  assert np.max(np.abs(g_write_c)) <= 1e-4 + 1e-9


# --- Configuration ----------------------------------------------------------


@pytest.mark.parametrize("field,value", [
    ("output_size", 0), ("memory_size", 0), ("word_size", 2.5),
    ("num_reads", 0), ("num_writes", 0), ("num_writes", True),
    ("controller", "gru"), ("hidden_size", -1), ("shift_range", -1),
    ("shift_range", 4), ("clip_value", -1.0), ("clip_value", "big"),
    ("initial_weighting", "learned"), ("input_size", 0),
    ("weighting_grad_clip", 0.0), ("weighting_grad_clip", -1.0),
    ("weighting_grad_clip", True), ("weighting_grad_clip", "10")])
def test_bad_config_raises_naming_the_field(field, value):
  with pytest.raises(ValueError, match=field):
    _config(**{field: value})


def test_config_is_frozen_and_sizes():
  config = _config()
  with pytest.raises(Exception):
    config.memory_size = 3
  assert config.num_shifts == 2 * S + 1
  assert config.interface_size == (R + H) * (W + 3 + 2 * S + 1) + 2 * H * W
  assert _config(shift_range=3).shift_range == 3   # 2·3 + 1 = 7 = N
  assert _config(shift_range=0, memory_size=1).num_shifts == 1
