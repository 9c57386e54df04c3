"""The interface parsing and whole DNC steps against core_reference.py.

Float64 throughout (conftest enables x64); the DNC runs with its own Haiku
parameters, read out of ``params`` by module path.
"""

import pathlib

import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import core_reference as cref
from dnc_jax import DNC, DNCConfig, initial_access_state, parse_interface
from helpers import state_to_reference

GOLDEN = pathlib.Path(__file__).parent / "data" / "official_access.npz"


@pytest.mark.parametrize("squash", ["oneplus", "softplus"])
@pytest.mark.parametrize("links", [True, False])
def test_parse_interface_every_field(squash, links):
  config = DNCConfig(output_size=1, word_size=4, num_reads=3, num_writes=2,
                     strength_squash=squash, use_temporal_links=links)
  vectors = 3.0 * np.random.default_rng(0).normal(
      size=(5, config.interface_size))
  got = parse_interface(jnp.asarray(vectors), config)._asdict()
  for b in range(5):
    want = cref.parse_interface(vectors[b], 3, 2, 4, links, squash)
    # The later variants' fields (tests/test_options.py) are absent when
    # their options are off, as here.
    options = {"read_masks", "write_masks", "link_sharpness"}
    assert set(want) == set(got) - options
    assert all(got[key] is None for key in options)
    for key, value in want.items():
      if value is None:
        assert got[key] is None, key
      else:
        np.testing.assert_allclose(np.asarray(got[key][b]), value,
                                   rtol=1e-13, atol=1e-15, err_msg=key)


def test_softplus_strengths_match_the_original_release():
  # The original release records raw (pre-squash) strengths and the
  # softplus-squashed ones its addressing used.
  data = np.load(GOLDEN)
  raw_r = data["h1/read_content_strengths_raw"].reshape(-1, 4)
  raw_w = data["h1/write_content_strengths_raw"].reshape(-1, 1)
  want_r = data["h1/read_content_strengths"].reshape(-1, 4)
  want_w = data["h1/write_content_strengths"].reshape(-1, 1)
  assert not np.allclose(raw_r, want_r)  # they really are pre-squash
  config = DNCConfig(output_size=1, word_size=8, num_reads=4, num_writes=1,
                     strength_squash="softplus")
  r, w = 4, 8
  vectors = np.zeros((len(raw_r), config.interface_size), np.float32)
  vectors[:, r * w:r * w + r] = raw_r
  vectors[:, r * w + r + w] = raw_w[:, 0]
  got = parse_interface(jnp.asarray(vectors), config)
  np.testing.assert_allclose(np.asarray(got.read_strengths), want_r,
                             rtol=1e-6)
  np.testing.assert_allclose(np.asarray(got.write_strengths), want_w,
                             rtol=1e-6)
  np.testing.assert_allclose(cref.softplus(raw_r.astype(np.float64)), want_r,
                             rtol=1e-6)


CONFIGS = {
    # clip_value small with scaled-up parameters, so clipping engages.
    "lstm_clipped": dict(controller="lstm", clip_value=0.6),
    "deep_lstm_h2": dict(controller="deep_lstm", num_layers=3, num_writes=2),
    "feedforward_no_links": dict(controller="feedforward", num_layers=2,
                                 use_temporal_links=False),
    "lstm_sparse_dense_stored": dict(controller="lstm", link_sparsity=2,
                                     link_storage="dense"),
}
T, B, X = 12, 2, 5


def linear_params(params, path):
  return {k: np.asarray(v, np.float64) for k, v in params[path].items()}


def reference_params(params, config):
  if config.controller == "feedforward":
    paths = [f"dnc/~/feedforward/linear_{i}" for i in range(config.num_layers)]
  elif config.controller == "deep_lstm":
    paths = [f"dnc/~/lstm_{i}/linear" for i in range(config.num_layers)]
  else:
    paths = ["dnc/~/lstm/linear"]
  used = set(paths) | {"dnc/~/memory_access/~parse/interface",
                       "dnc/output_linear"}
  assert used == set(params), sorted(params)  # nothing left out
  return dict(controller=[linear_params(params, p) for p in paths],
              interface=linear_params(
                  params, "dnc/~/memory_access/~parse/interface"),
              output=linear_params(params, "dnc/output_linear"))


@pytest.mark.parametrize("name", list(CONFIGS))
def test_whole_dnc_steps_match_the_reference(name):
  config = DNCConfig(output_size=3, memory_size=8, word_size=4, num_reads=2,
                     hidden_size=6, **CONFIGS[name])

  def run(inputs):
    core = DNC(config)
    state = core.initial_state(B, jnp.float64)
    return hk.dynamic_unroll(core, inputs, state)

  f = hk.transform(run)
  rng = np.random.default_rng(0)
  inputs = rng.normal(size=(T, B, X))
  params = jax.jit(f.init)(jax.random.PRNGKey(1), inputs)
  scale = 2.0 if config.clip_value < 1 else 1.0
  params = jax.tree.map(lambda p: scale * p, params)
  assert all(p.dtype == jnp.float64 for p in jax.tree.leaves(params))
  outputs, final = jax.jit(f.apply)(params, None, inputs)

  ref_params = reference_params(params, config)
  layers = 0 if config.controller == "feedforward" else len(
      ref_params["controller"])
  zeros = np.zeros(config.hidden_size)
  ref_states = [dict(controller=[(zeros, zeros)] * layers,
                     read_words=np.zeros((config.num_reads,
                                          config.word_size)),
                     access=state_to_reference(
                         initial_access_state(config, 1, jnp.float64), 0))
                for _ in range(B)]
  clipped = 0
  for t in range(T):
    for b in range(B):
      want, ref_states[b] = cref.dnc_step(ref_params, config, inputs[t, b],
                                          ref_states[b])
      np.testing.assert_allclose(np.asarray(outputs[t, b]), want,
                                 atol=1e-10, err_msg=f"step {t}")
      clipped += np.sum(np.abs(want) == config.clip_value)
  for b in range(B):
    got = state_to_reference(final.access_state, b)
    for key, value in ref_states[b]["access"].items():
      np.testing.assert_allclose(got[key], value, atol=1e-10, err_msg=key)
    np.testing.assert_allclose(np.asarray(final.read_words[b]),
                               ref_states[b]["read_words"], atol=1e-10)
    if layers:
      got_ctrl = jax.tree.leaves(final.controller_state)
      want_ctrl = [x for layer in ref_states[b]["controller"] for x in layer]
      for x, y in zip(got_ctrl, want_ctrl):
        np.testing.assert_allclose(np.asarray(x[b]), y, atol=1e-10)
  if name == "lstm_clipped":
    assert clipped > 0  # the output clip was exercised
