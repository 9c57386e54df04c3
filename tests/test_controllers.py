"""DNC with a controller of one's own, the read-words output, Haiku conventions.

Parameter paths of the built-in controllers were recorded from the 0.1.0 code
(before the controller option existed): checkpoints must keep loading.
"""

import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dnc_jax import DNC, DNCConfig

X, B, T = 5, 2, 3

# Recorded from dnc_jax 0.1.0: sorted (module, name, shape) of
# hk.dynamic_unroll(DNC(config), zeros[3, 2, 5]) parameters.
PARAMS_0_1_0 = {
    "lstm": [
        ("dnc/output_linear", "b", (3,)), ("dnc/output_linear", "w", (72, 3)),
        ("dnc/~/lstm/linear", "b", (256,)),
        ("dnc/~/lstm/linear", "w", (77, 256)),
        ("dnc/~/memory_access/~parse/interface", "b", (33,)),
        ("dnc/~/memory_access/~parse/interface", "w", (64, 33))],
    "deep_lstm": [
        ("dnc/output_linear", "b", (3,)),
        ("dnc/output_linear", "w", (136, 3)),
        ("dnc/~/lstm_0/linear", "b", (256,)),
        ("dnc/~/lstm_0/linear", "w", (77, 256)),
        ("dnc/~/lstm_1/linear", "b", (256,)),
        ("dnc/~/lstm_1/linear", "w", (141, 256)),
        ("dnc/~/memory_access/~parse/interface", "b", (33,)),
        ("dnc/~/memory_access/~parse/interface", "w", (128, 33))],
    "feedforward": [
        ("dnc/output_linear", "b", (3,)), ("dnc/output_linear", "w", (72, 3)),
        ("dnc/~/feedforward/linear_0", "b", (64,)),
        ("dnc/~/feedforward/linear_0", "w", (13, 64)),
        ("dnc/~/feedforward/linear_1", "b", (64,)),
        ("dnc/~/feedforward/linear_1", "w", (64, 64)),
        ("dnc/~/memory_access/~parse/interface", "b", (33,)),
        ("dnc/~/memory_access/~parse/interface", "w", (64, 33))],
}


def config(**kw):
  base = dict(output_size=3, memory_size=8, word_size=4, num_reads=2,
              num_layers=2)
  base.update(kw)
  return DNCConfig(**base)


def names(params):
  return sorted((m, k, tuple(v.shape)) for m, d in params.items()
                for k, v in d.items())


@pytest.mark.parametrize("controller", sorted(PARAMS_0_1_0))
def test_builtin_controllers_keep_their_parameter_paths(controller):
  cfg = config(controller=controller)

  def f(x):
    core = DNC(cfg)
    return hk.dynamic_unroll(core, x, core.initial_state(B))

  params = jax.jit(hk.transform(f).init)(jax.random.PRNGKey(0),
                                         jnp.zeros((T, B, X)))
  assert names(params) == PARAMS_0_1_0[controller]


def unrolled(make_core, xs):
  def f(x):
    core = make_core()
    return hk.dynamic_unroll(core, x, core.initial_state(x.shape[1]))[0]
  return hk.without_apply_rng(hk.transform(f))


def test_gru_controller_under_jit_and_grad():
  cfg = config(memory_backend="xla")
  model = unrolled(lambda: DNC(cfg, controller=hk.GRU(7, name="gru")), None)
  xs = jax.random.normal(jax.random.PRNGKey(1), (T, B, X), jnp.float32)
  params = jax.jit(model.init)(jax.random.PRNGKey(0), xs)
  # The GRU's parameters exist, and no LSTM was built.
  assert any("gru" in m for m in params)
  assert not any("lstm" in m for m in params)
  assert params["dnc/~/memory_access/~parse/interface"]["w"].shape[0] == 7
  out = jax.jit(model.apply)(params, xs)
  assert out.shape == (T, B, 3)
  loss = lambda p: jnp.sum(model.apply(p, xs) ** 2)
  grads = jax.jit(jax.grad(loss))(params)
  gru_grad = grads["gru"]["w_i"] if "gru" in grads else None
  assert gru_grad is not None and np.all(np.isfinite(gru_grad))
  assert np.abs(gru_grad).sum() > 0  # Gradient reaches the controller.


def test_deep_rnn_controller():
  cfg = config()

  def core():
    deep = hk.DeepRNN([hk.LSTM(6), jax.nn.relu, hk.GRU(5)], name="deep")
    return DNC(cfg, controller=deep)

  xs = jnp.ones((T, B, X), jnp.float32)
  model = unrolled(core, xs)
  params = jax.jit(model.init)(jax.random.PRNGKey(0), xs)
  assert params["dnc/~/memory_access/~parse/interface"]["w"].shape[0] == 5
  out = jax.jit(model.apply)(params, xs)
  assert out.shape == (T, B, 3) and np.all(np.isfinite(out))


def test_read_words_output_equals_the_projection_inputs():
  # The default output is Linear([controller_output, read_words]); with
  # return_read_words the same two come back unprojected, and no output
  # layer is created.
  cfg = config(clip_value=0)

  def step(return_read_words):
    def fn(x):
      core = DNC(cfg, return_read_words=return_read_words)
      return core(x, core.initial_state(B))[0]
    return hk.without_apply_rng(hk.transform(fn))

  plain, raw = step(False), step(True)
  x = jax.random.normal(jax.random.PRNGKey(2), (B, X), jnp.float32)
  params = jax.jit(plain.init)(jax.random.PRNGKey(0), x)
  assert "dnc/output_linear" not in jax.eval_shape(
      raw.init, jax.random.PRNGKey(0), x)
  out = jax.jit(plain.apply)(params, x)
  controller_output, words = jax.jit(raw.apply)(params, x)
  assert controller_output.shape == (B, 64) and words.shape == (B, 2, 4)
  lin = params["dnc/output_linear"]
  want = (np.concatenate([controller_output, words.reshape(B, -1)], -1)
          @ lin["w"] + lin["b"])
  np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-6)


def test_initial_state_none_is_unbatched_and_steps():
  cfg = config()

  def f(x):
    core = DNC(cfg)
    batched, unbatched = core.initial_state(1), core.initial_state(None)
    for a, b in zip(jax.tree.leaves(batched), jax.tree.leaves(unbatched)):
      assert a.shape == (1,) + b.shape
    out_b, _ = core(x[None], batched)
    out_u, state = core(x, unbatched)
    return out_b[0], out_u, state

  f = hk.without_apply_rng(hk.transform(f))
  x = jax.random.normal(jax.random.PRNGKey(3), (X,), jnp.float32)
  params = jax.jit(f.init)(jax.random.PRNGKey(0), x)
  out_b, out_u, state = jax.jit(f.apply)(params, x)
  np.testing.assert_allclose(out_u, out_b, rtol=1e-5, atol=1e-6)
  assert state.read_words.shape == (2, 4)


@pytest.mark.parametrize("size", [np.int32(3), np.int64(2), 1])
def test_integer_like_batch_sizes_are_accepted(size):
  def f():
    return DNC(config()).initial_state(size)
  state = hk.transform(f).apply({}, None)
  assert state.read_words.shape == (int(size), 2, 4)
  assert state.access_state.memory.shape == (int(size), 8, 4)


@pytest.mark.parametrize("size", [0, -1, 2.5, "3", True, np.float32(2)])
def test_bad_batch_sizes_name_batch_size(size):
  def f():
    return DNC(config()).initial_state(size)
  with pytest.raises(ValueError, match="batch_size"):
    hk.transform(f).apply({}, None)


def test_controller_must_be_an_rnn_core():
  with pytest.raises(TypeError, match="hk.RNNCore"):
    hk.transform(lambda: DNC(config(), controller=lambda x, s: (x, s))).init(
        None)
