"""The options of docs/maths.md §8 (Csordás & Schmidhuber 2019; Franke et
al. 2018): against the NumPy reference, gradients, errors, defaults."""

import functools

import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import reference_options as ref_opt
from helpers import (example, random_interface, random_state, sigmoid,
                     state_to_reference)
from dnc_jax import (DNC, DNCConfig, addressing, cpu_kernels, fused,
                     initial_access_state, memory_step, parse_interface)
from dnc_jax.config import DNC_MD, DNC_MSD

STEPS = 12
N, W = 9, 4


def with_options(iface, rng, masking, sharpness, sharp=1.0):
  """``iface`` with random masks and/or link sharpness added."""
  b, r, w = iface.read_keys.shape
  h = iface.write_keys.shape[1]
  changes = {}
  if masking:
    changes["read_masks"] = sigmoid(2 * rng.normal(size=(b, r, w)))
    changes["write_masks"] = sigmoid(2 * rng.normal(size=(b, h, w)))
  if sharpness:
    changes["link_sharpness"] = 1.0 + np.log1p(
        np.exp(sharp * rng.normal(size=(b, r, 2 * h))))
  return iface._replace(**changes)


def run_both(config, rng, backend, storage_sparsity=None, steps=STEPS):
  """Steps library and reference side by side; returns the final states."""
  b = 2
  state = initial_access_state(config, b, np.float64)
  ref_states = [state_to_reference(state, i) for i in range(b)]
  step = jax.jit(functools.partial(
      memory_step, link_sparsity=storage_sparsity, backend=backend,
      deallocation=config.deallocation))
  for _ in range(steps):
    iface = random_interface(rng, b, config.num_reads, config.num_writes, W,
                             sharp=3.0, links=config.use_temporal_links)
    iface = with_options(iface, rng, config.content_masking,
                         config.link_sharpness)
    words, state = step(iface, state)
    for i in range(b):
      want_words, ref_states[i] = ref_opt.step(
          example(iface, i), ref_states[i], config.deallocation,
          config.link_sparsity, config.use_temporal_links)
      got = state_to_reference(state, i)
      np.testing.assert_allclose(words[i], want_words, rtol=0, atol=1e-10)
      for key, value in ref_states[i].items():
        np.testing.assert_allclose(got[key], value, rtol=0, atol=1e-10,
                                   err_msg=key)
  return state


OPTION_SETS = {
    "masking": dict(content_masking=True),
    "deallocation": dict(deallocation=True),
    "sharpness": dict(link_sharpness=True),
    "dnc_md": DNC_MD,
    "dnc_msd": DNC_MSD,
}


@pytest.mark.parametrize("backend", ["xla", "auto"])
@pytest.mark.parametrize("num_writes", [1, 2])
@pytest.mark.parametrize("options", sorted(OPTION_SETS))
def test_options_match_reference_dense_link(options, num_writes, backend):
  config = DNCConfig(output_size=1, memory_size=N, word_size=W, num_reads=3,
                     num_writes=num_writes, **OPTION_SETS[options])
  run_both(config, np.random.default_rng(num_writes), backend)


@pytest.mark.parametrize("link", ["truncated", "indexed", "none"])
def test_options_match_reference_other_links(link):
  options = dict(DNC_MSD if link == "truncated" else DNC_MD)
  config = DNCConfig(output_size=1, memory_size=N, word_size=W, num_reads=2,
                     num_writes=2, link_sparsity=None if link == "none" else 3,
                     link_storage="dense" if link == "truncated"
                     else "indexed", use_temporal_links=link != "none",
                     **options)
  run_both(config, np.random.default_rng(7), "auto",
           storage_sparsity=3 if link == "truncated" else None)


def test_deallocation_empties_freed_slots():
  # A slot read with weight 1 and freed with gate 1 keeps nothing.
  config = DNCConfig(output_size=1, memory_size=4, word_size=W, num_reads=1,
                     deallocation=True)
  state = initial_access_state(config, 1, np.float64)
  state = state._replace(memory=np.ones((1, 4, W)),
                         read_weights=np.eye(4)[None, :1])
  iface = random_interface(np.random.default_rng(0), 1, 1, 1, W)
  iface = iface._replace(free_gates=np.ones((1, 1)),
                         write_gates=np.zeros((1, 1)))
  _, kept = memory_step(iface, state)
  _, freed = memory_step(iface, state, deallocation=True)
  np.testing.assert_array_equal(kept.memory, state.memory)
  np.testing.assert_array_equal(freed.memory[0, 0], np.zeros(W))
  np.testing.assert_array_equal(freed.memory[0, 1:], state.memory[0, 1:])


def test_open_masks_equal_plain_content_weights():
  rng = np.random.default_rng(1)
  memory, keys = rng.normal(size=(2, 7, 3)), rng.normal(size=(2, 2, 3))
  strengths = rng.uniform(1, 5, size=(2, 2))
  np.testing.assert_allclose(
      addressing.content_weights(memory, keys, strengths, np.ones((2, 2, 3))),
      addressing.content_weights(memory, keys, strengths), rtol=1e-12)


def test_sharpen_is_the_ratio_of_powers():
  rng = np.random.default_rng(2)
  d = rng.uniform(size=(3, 6)) * np.array([[1], [1e-3], [0]])
  s = np.array([1.0, 2.5, 7.0])
  got = addressing.sharpen(d, s)
  for i in range(3):
    np.testing.assert_allclose(got[i], ref_opt.sharpen(d[i], s[i]),
                               rtol=1e-12)


def test_gradients_through_the_step_with_every_option():
  rng = np.random.default_rng(3)
  b, r, h = 2, 2, 2
  state = random_state(rng, b, 6, W, r, h)
  iface = with_options(random_interface(rng, b, r, h, W), rng, True, True)
  step = functools.partial(memory_step, backend="xla", deallocation=True)

  def loss(memory, read_keys, read_masks, write_masks, link_sharpness,
           free_gates, prev_read):
    i = iface._replace(read_keys=read_keys, read_masks=read_masks,
                       write_masks=write_masks, link_sharpness=link_sharpness,
                       free_gates=free_gates)
    words, new = step(i, state._replace(memory=memory,
                                        read_weights=prev_read))
    return (jnp.sum(words * np.arange(words.size).reshape(words.shape))
            + jnp.sum(new.memory ** 2) + jnp.sum(new.read_weights ** 2))

  args = (state.memory, iface.read_keys, iface.read_masks, iface.write_masks,
          iface.link_sharpness, iface.free_gates, state.read_weights)
  # Reverse mode: the dense link step has a hand-written VJP only.
  check_grads(jax.jit(loss), args, order=1, modes=("rev",), atol=1e-5,
              rtol=1e-5, eps=1e-6)


def test_sharpen_gradient():
  rng = np.random.default_rng(4)
  d = rng.uniform(size=(2, 3, 5)) / 5
  s = rng.uniform(1, 4, size=(2, 3))
  check_grads(addressing.sharpen, (d, s), order=2, modes=("fwd", "rev"),
              atol=1e-5, rtol=1e-5, eps=1e-6)


@pytest.mark.parametrize("field,value", [
    ("content_masking", 1), ("deallocation", "yes"), ("link_sharpness", None),
    ("controller_layer_norm", 1.0), ("interface_layer_norm", "no"),
    ("bypass_dropout", 1.0),
    ("bypass_dropout", -0.1), ("bypass_dropout", True),
    ("bypass_dropout", "0.1")])
def test_bad_values_name_the_field(field, value):
  with pytest.raises(ValueError, match=field):
    DNCConfig(output_size=1, **{field: value})


@pytest.mark.parametrize("changes,named", [
    (dict(link_sharpness=True, use_temporal_links=False), "link_sharpness"),
    (dict(link_sharpness=True, link_sparsity=2), "link_sharpness"),
    (dict(controller_layer_norm=True, controller="feedforward"),
     "controller_layer_norm"),
    (dict(deallocation=True, memory_backend="fused"), "deallocation"),
    (dict(content_masking=True, memory_backend="fused"), "content_masking"),
])
def test_bad_combinations_name_the_field(changes, named):
  with pytest.raises(ValueError, match=named):
    DNCConfig(output_size=1, **changes)


@pytest.mark.parametrize("options", sorted(OPTION_SETS))
def test_fused_backend_refuses_options_naming_them(options):
  config = DNCConfig(output_size=1, memory_size=N, word_size=W,
                     **OPTION_SETS[options])
  rng = np.random.default_rng(5)
  iface = with_options(random_interface(rng, 1, 4, 1, W), rng,
                       config.content_masking, config.link_sharpness)
  state = initial_access_state(config, 1, np.float64)
  assert not fused.supports(iface, state, deallocation=config.deallocation)
  first = sorted(OPTION_SETS[options])[0]
  with pytest.raises(ValueError, match=first):
    memory_step(iface, state, backend="fused",
                deallocation=config.deallocation)


def test_sharpness_with_the_indexed_link_is_refused():
  config = DNCConfig(output_size=1, memory_size=N, word_size=W,
                     link_sparsity=2)
  rng = np.random.default_rng(6)
  iface = with_options(random_interface(rng, 1, 4, 1, W), rng, False, True)
  with pytest.raises(ValueError, match="link_sharpness"):
    memory_step(iface, initial_access_state(config, 1, np.float64))


@pytest.mark.parametrize("options", sorted(OPTION_SETS))
def test_interface_layout(options):
  config = DNCConfig(output_size=1, num_reads=3, num_writes=2, word_size=5,
                     **OPTION_SETS[options])
  base = DNCConfig(output_size=1, num_reads=3, num_writes=2, word_size=5)
  vector = np.random.default_rng(8).normal(size=(2, config.interface_size))
  got = parse_interface(vector, config)
  plain = parse_interface(vector[:, :base.interface_size], base)
  # The usual fields come first and are parsed as without the options.
  for name in plain._fields:
    a, b = getattr(got, name), getattr(plain, name)
    assert (b is None) == (name in ("read_masks", "write_masks",
                                    "link_sharpness"))
    if b is not None:
      np.testing.assert_array_equal(a, b)
  rest = vector[:, base.interface_size:]
  if config.content_masking:
    np.testing.assert_allclose(got.read_masks,
                               sigmoid(rest[:, :15].reshape(2, 3, 5)))
    np.testing.assert_allclose(got.write_masks,
                               sigmoid(rest[:, 15:25].reshape(2, 2, 5)))
    rest = rest[:, 25:]
  else:
    assert got.read_masks is None and got.write_masks is None
  if config.link_sharpness:
    assert rest.shape[1] == 12
    np.testing.assert_allclose(got.link_sharpness,
                               1 + np.log1p(np.exp(rest.reshape(2, 3, 4))))
  else:
    assert got.link_sharpness is None and rest.shape[1] == 0


# --- The DNC core: defaults, layer norm, bypass dropout. ---

X, B, T = 5, 2, 3


def core_fn(config, is_training=False, return_read_words=False):
  def f(xs):
    core = DNC(config, is_training=is_training,
               return_read_words=return_read_words)
    return hk.dynamic_unroll(core, xs, core.initial_state(B))
  return hk.transform(f)


def small(**changes):
  return DNCConfig(output_size=3, memory_size=8, word_size=4, num_reads=2,
                   **changes)


def test_default_keeps_the_fused_fast_path():
  if cpu_kernels.compiler() is None:
    pytest.skip("no C++ compiler for the fused kernel")
  xs = jnp.ones((T, B, X), jnp.float32)
  for changes, fused_expected in ((dict(), True), (DNC_MD, False),
                                  (dict(link_sharpness=True), False)):
    model = core_fn(small(**changes))
    params = jax.eval_shape(model.init, jax.random.PRNGKey(0), xs)
    hlo = jax.jit(model.apply).lower(params, None, xs).as_text()
    assert ("DncMemoryStepForward" in hlo) == fused_expected, changes


def test_options_off_equal_the_default_exactly():
  xs = jax.random.normal(jax.random.PRNGKey(1), (T, B, X), jnp.float32)
  plain = core_fn(small())
  params = jax.jit(plain.init)(jax.random.PRNGKey(0), xs)
  off = core_fn(small(content_masking=False, deallocation=False,
                      link_sharpness=False, controller_layer_norm=False,
                      interface_layer_norm=False, bypass_dropout=0.0),
                is_training=True)
  assert jax.tree.structure(jax.eval_shape(off.init, jax.random.PRNGKey(0),
                                          xs)) == \
      jax.tree.structure(params)
  want = plain.apply(params, None, xs)
  got = off.apply(params, jax.random.PRNGKey(3), xs)
  for a, b in zip(jax.tree.leaves(want), jax.tree.leaves(got)):
    np.testing.assert_array_equal(a, b)


def test_options_change_the_interface_width_and_run():
  xs = jax.random.normal(jax.random.PRNGKey(1), (T, B, X), jnp.float32)
  config = small(**DNC_MSD, controller_layer_norm=True,
                 interface_layer_norm=True, bypass_dropout=0.5)
  model = core_fn(config, is_training=True)
  params = jax.jit(model.init)(jax.random.PRNGKey(0), xs)
  w = params["dnc/~/memory_access/~parse/interface"]["w"]
  assert w.shape[1] == config.interface_size == 33 + 8 + 4 + 4
  out, _ = jax.jit(model.apply)(params, jax.random.PRNGKey(2), xs)
  assert np.all(np.isfinite(out))


@pytest.mark.parametrize("controller", ["lstm", "deep_lstm"])
def test_layer_norm_parameter_paths(controller):
  config = small(controller=controller, num_layers=2,
                 controller_layer_norm=True)
  xs = jnp.zeros((T, B, X), jnp.float32)
  params = jax.jit(core_fn(config).init)(jax.random.PRNGKey(0), xs)
  prefix = "dnc/~/lstm" if controller == "lstm" else "dnc/~/lstm_0"
  assert set(params[prefix + "/linear"]) == {"w"}
  assert set(params[prefix + "/gates_layer_norm"]) == {"scale", "offset"}
  assert set(params[prefix + "/cell_layer_norm"]) == {"scale", "offset"}


def layer_norm(x, scale, offset, eps=1e-5):
  mean = x.mean(-1, keepdims=True)
  var = ((x - mean) ** 2).mean(-1, keepdims=True)
  return (x - mean) / np.sqrt(var + eps) * scale + offset


def test_layer_norm_lstm_matches_numpy():
  from dnc_jax.controllers import LayerNormLSTM
  d = 6

  def f(x, state):
    return LayerNormLSTM(d, name="lstm")(x, state)

  model = hk.without_apply_rng(hk.transform(f))
  rng = np.random.default_rng(9)
  x = rng.normal(size=(B, X))
  state = hk.LSTMState(hidden=rng.normal(size=(B, d)),
                       cell=rng.normal(size=(B, d)))
  params = model.init(jax.random.PRNGKey(0), x, state)
  params = jax.tree.map(
      lambda p: p + rng.normal(size=p.shape) * 0.1, params)
  with jax.enable_x64():
    out, new = model.apply(params, x, state)
  p = {k.split("/")[-1]: v for k, v in params.items()}
  z = np.concatenate([x, state.hidden], -1) @ np.asarray(p["linear"]["w"])
  z = layer_norm(z, p["gates_layer_norm"]["scale"],
                 p["gates_layer_norm"]["offset"])
  i, g, fg, o = np.split(z, 4, axis=-1)
  cell = sigmoid(fg + 1) * state.cell + sigmoid(i) * np.tanh(g)
  hidden = sigmoid(o) * np.tanh(layer_norm(
      cell, p["cell_layer_norm"]["scale"], p["cell_layer_norm"]["offset"]))
  np.testing.assert_allclose(new.cell, cell, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(out, hidden, rtol=1e-5, atol=1e-5)


def test_bypass_dropout_off_when_not_training():
  xs = jax.random.normal(jax.random.PRNGKey(1), (T, B, X), jnp.float32)
  config = small(bypass_dropout=0.5)
  model = core_fn(config)
  params = jax.jit(model.init)(jax.random.PRNGKey(0), xs)
  a = model.apply(params, None, xs)  # No rng needed.
  b = core_fn(small()).apply(params, None, xs)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(x, y)


def test_bypass_dropout_masks_only_the_controller_output():
  rate = 0.5
  xs = jax.random.normal(jax.random.PRNGKey(1), (T, B, X), jnp.float32)
  config = small(bypass_dropout=rate, clip_value=0)
  eval_raw = core_fn(config, return_read_words=True)
  train_raw = core_fn(config, is_training=True, return_read_words=True)
  train = core_fn(config, is_training=True)
  params = jax.jit(train.init)(jax.random.PRNGKey(0), xs)
  key = jax.random.PRNGKey(5)
  (h, words), state = eval_raw.apply(params, None, xs)
  (dropped, train_words), train_state = train_raw.apply(params, key, xs)
  # The memory and the state never see the dropout.
  np.testing.assert_array_equal(words, train_words)
  for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(train_state)):
    np.testing.assert_array_equal(a, b)
  # Each unit of the controller output is dropped or scaled by 1/(1-rate).
  kept = np.asarray(dropped) != 0
  assert 0 < kept.mean() < 1
  np.testing.assert_allclose(np.asarray(dropped)[kept],
                             np.asarray(h)[kept] / (1 - rate), rtol=1e-6)
  # The output layer sees [dropped controller output, read words].
  out, _ = train.apply(params, key, xs)
  lin = params["dnc/output_linear"]
  want = (np.concatenate([dropped, np.asarray(words).reshape(T, B, -1)], -1)
          @ lin["w"] + lin["b"])
  np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5)


def test_interface_layer_norm():
  from dnc_jax import MemoryAccess
  config = small(interface_layer_norm=True, **DNC_MD)

  def f(h):
    return MemoryAccess(config, name="memory_access").parse(h)

  model = hk.without_apply_rng(hk.transform(f))
  rng = np.random.default_rng(10)
  h = rng.normal(size=(B, 7))
  params = model.init(jax.random.PRNGKey(0), h)
  params = jax.tree.map(lambda p: p + rng.normal(size=p.shape) * 0.1, params)
  norm = params["memory_access/~parse/interface_layer_norm"]
  lin = params["memory_access/~parse/interface"]
  got = model.apply(params, h)
  raw = layer_norm(h @ np.asarray(lin["w"]) + np.asarray(lin["b"]),
                   norm["scale"], norm["offset"])
  want = parse_interface(raw, config)
  for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
