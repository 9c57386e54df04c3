"""The bidirectional DNC (experiments/bidirectional.py): shapes, what the
backward state sees, jit, gradients, and the ``brsdnc`` bAbI preset."""

import json

import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from dnc_jax import DNCConfig, addressing
from experiments import babi_eval, cli, tasks
from experiments.bidirectional import BrsDNC, backward_states
from experiments.models import babi_model, model_config

T, B, X = 5, 2, 4


def tiny(**changes):
  fields = dict(output_size=3, input_size=X, hidden_size=6, memory_size=5,
                word_size=3, num_reads=2, use_temporal_links=False,
                controller_layer_norm=True, interface_layer_norm=True)
  fields.update(changes)
  return DNCConfig(**fields)


def inputs(dtype=jnp.float32, seed=0):
  return jax.random.normal(jax.random.PRNGKey(seed), (T, B, X), dtype)


def backward_fn(config):
  return hk.without_apply_rng(hk.transform(
      lambda x: backward_states(x, config)))


def test_shapes_and_parameters():
  config = tiny()
  model = babi_model("brsdnc", config)
  params = jax.jit(model.init)(jax.random.PRNGKey(0), inputs())
  out = jax.jit(model.apply)(params, inputs())
  assert out.shape == (T, B, 3)
  back = backward_fn(config)
  assert jax.jit(back.apply)(jax.jit(back.init)(jax.random.PRNGKey(0),
                                                inputs()),
                             inputs()).shape == (T, B, 6)
  # Forward controller: [x, reads]; interface and output: [h, b] (+ reads).
  assert params["brsdnc/forward_controller/~/lstm/linear"]["w"].shape == (
      X + 2 * 3 + 6, 4 * 6)
  assert params["brsdnc/backward_lstm/linear"]["w"].shape == (X + 6, 4 * 6)
  assert params["brsdnc/dnc/~/memory_access/~parse/interface"]["w"].shape[
      0] == 6 + 6
  assert params["brsdnc/dnc/output_linear"]["w"].shape == (6 + 6 + 2 * 3, 3)


def test_backward_state_sees_only_the_inputs_from_its_step_on():
  config = tiny()
  back = backward_fn(config)
  x = inputs()
  params = jax.jit(back.init)(jax.random.PRNGKey(0), x)
  s = 2
  perturbed = x.at[s].add(1.0)
  back_apply = jax.jit(back.apply)
  a, b = back_apply(params, x), back_apply(params, perturbed)
  np.testing.assert_array_equal(a[s + 1:], b[s + 1:])  # After s: unchanged.
  assert all(float(jnp.max(jnp.abs(a[t] - b[t]))) > 1e-4
             for t in range(s + 1))  # At s and before: changed.
  # The whole model: through b, the first output depends on the last input
  # (a unidirectional DNC's could not).
  model = babi_model("brsdnc", config)
  mparams = jax.jit(model.init)(jax.random.PRNGKey(0), x)
  last = x.at[T - 1].add(1.0)
  model_apply = jax.jit(model.apply)
  assert float(jnp.max(jnp.abs(model_apply(mparams, x)[0]
                               - model_apply(mparams, last)[0]))) > 1e-6


def test_jit_and_remat_match():
  config = tiny(bypass_dropout=0.3)
  model = babi_model("brsdnc", config)
  x = inputs()
  params = jax.jit(model.init)(jax.random.PRNGKey(0), x)
  eager = model.apply(params, x)
  np.testing.assert_allclose(jax.jit(model.apply)(params, x), eager,
                             rtol=1e-5, atol=1e-6)
  chunked = babi_model("brsdnc", config, remat_chunk=2)
  np.testing.assert_allclose(jax.jit(chunked.apply)(params, x), eager,
                             rtol=1e-5, atol=1e-6)
  training = babi_model("brsdnc", config, is_training=True)
  key = jax.random.PRNGKey(4)
  np.testing.assert_allclose(jax.jit(training.apply)(params, key, x),
                             training.apply(params, key, x),
                             rtol=1e-5, atol=1e-6)


def test_bad_inputs_are_named():
  config = tiny()
  with pytest.raises(ValueError, match="input_size"):
    hk.transform(lambda x: BrsDNC(config)(x)).init(
        jax.random.PRNGKey(0), jnp.zeros((T, B, X + 1)))
  with pytest.raises(ValueError, match=r"\[time, batch, features\]"):
    hk.transform(lambda x: BrsDNC(config)(x)).init(
        jax.random.PRNGKey(0), jnp.zeros((B, X)))


def _usage_with_gradient(prev_usage, prev_write_weights, free_gates,
                         prev_read_weights):
  """``addressing.usage_update`` without its stop-gradient on the previous
  write weights (the original release's choice, so the DNC's gradient is
  deliberately not the derivative of its forward pass there)."""
  written = 1.0 - addressing.product_over_axis(1.0 - prev_write_weights,
                                               axis=-2)
  return ((prev_usage + written - prev_usage * written)
          * addressing.retention(free_gates, prev_read_weights))


@pytest.mark.slow
def test_gradients_float64(monkeypatch):
  # Dropout on with a fixed key (a fixed mask); no gradient clipping, whose
  # clipped backward pass is not the forward's derivative either.
  config = tiny(bypass_dropout=0.5, controller_grad_clip=None,
                memory_backend="xla")
  model = babi_model("brsdnc", config, is_training=True)
  x = inputs(jnp.float64)
  params = model.init(jax.random.PRNGKey(0), x)
  assert all(p.dtype == jnp.float64 for p in jax.tree.leaves(params))
  key = jax.random.PRNGKey(1)
  target = jax.random.normal(jax.random.PRNGKey(2), (T, B, 3), jnp.float64)

  def loss(params, x):
    return jnp.sum(jnp.tanh(model.apply(params, key, x)) * target)

  # As trained: every parameter, the backward LSTM's included, gets a
  # gradient.
  grads = jax.grad(loss)(params, x)
  for name, leaves in grads.items():
    for leaf in jax.tree.leaves(leaves):
      assert np.all(np.isfinite(leaf)) and np.any(leaf != 0), name
  # With the usage stop-gradient lifted, the gradient is the derivative
  # of the forward pass: backward LSTM, forward controller, memory, bypass
  # dropout and output layer together.
  monkeypatch.setattr(addressing, "usage_update", _usage_with_gradient)
  check_grads(loss, (params, x), order=1, modes=["rev"], eps=1e-6,
              atol=1e-5, rtol=1e-5)


@pytest.mark.slow
def test_brsdnc_preset_is_frankes_and_trains(tmp_path):
  preset = tasks.preset("babi", "brsdnc")
  assert preset["kind"] == "brsdnc"
  assert preset["model"] == dict(tasks.preset("babi", "rsdnc")["model"])
  model = preset["model"]
  assert (model["hidden_size"], model["memory_size"], model["word_size"],
          model["num_reads"]) == (172, 128, 64, 4)
  assert model["controller_layer_norm"] and model["interface_layer_norm"]
  assert not model["use_temporal_links"] and model["bypass_dropout"] == 0.1
  cli.validate_settings("babi", dict(preset, task=dict(
      preset["task"], data_dir="unused")))
  assert isinstance(model_config("brsdnc", model, 30, 30), DNCConfig)
  data = tmp_path / "data"
  data.mkdir()
  stories = ("1 Mary moved to the bathroom.\n2 Where is Mary? \tbathroom\t1"
             "\n1 John went to the hallway.\n2 Where is John? \thallway\t1\n")
  (data / "qa1_single-supporting-fact_train.txt").write_text(stories * 4)
  (data / "qa1_single-supporting-fact_test.txt").write_text(stories)
  settings = tasks.preset("babi", "brsdnc")
  settings["task"].update(data_dir=str(data), eval_stories=0)
  settings["model"].update(hidden_size=8, memory_size=6, word_size=4,
                           num_reads=2)
  settings["loop"].update(steps=2, batch_size=2, log_every=1, eval_every=2,
                          checkpoint_every=2)
  summary = cli.run_babi(settings, tmp_path / "run", progress=False,
                         preset="brsdnc")
  assert summary["step"] == 2 and np.isfinite(summary["train"]["loss"])
  assert "valid/mean_error" in summary["eval"]
  saved = cli.saved_settings(tmp_path / "run")
  assert saved["settings"]["kind"] == "brsdnc"
  # dnc-babi-eval rebuilds the model from the run record.
  assert babi_eval.main(["--checkpoint", str(tmp_path / "run"),
                         "--data-dir", str(data), "--split", "test"]) == 0
  assert json.loads((tmp_path / "run" / "babi-test.json").read_text())[
      "kind"] == "brsdnc"
