"""Bypass dropout in the trainer: on in training, off in evaluation, exact
resume, and models without dropout traced exactly as before."""

import os
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from dnc_jax import DNCConfig
from experiments import babi_data, cli, tasks
from experiments.loop import (OptimizerConfig, TrainState, load_params,
                              make_optimizer, make_train_step)
from experiments.models import babi_model, uses_dropout
from experiments.tasks import babi
from experiments.tasks.base import global_norm

ROOT = pathlib.Path(__file__).resolve().parents[1]
V, T, B = 9, 6, 3

STORIES = """\
1 Mary moved to the bathroom.
2 John went to the hallway.
3 Where is Mary? \tbathroom\t1
4 Daniel went back to the hallway.
5 Where is Daniel? \thallway\t4
1 Sandra travelled to the office.
2 Where is Sandra? \toffice\t1
"""


def write_fixture(folder, stories_per_task=4):
  """A small bAbI folder (task 1 only), as tests/test_babi.py writes."""
  folder.mkdir(parents=True, exist_ok=True)
  (folder / "qa1_single-supporting-fact_train.txt").write_text(
      STORIES * stories_per_task)
  return folder


def tiny(**changes):
  return DNCConfig(output_size=V, input_size=V, hidden_size=8, memory_size=6,
                   word_size=4, num_reads=2, use_temporal_links=False,
                   controller_layer_norm=True, interface_layer_norm=True,
                   **changes)


def batch():
  rng = np.random.default_rng(0)
  ids = rng.integers(1, V, (T, B)).astype(np.int32)
  targets = rng.integers(1, V, (T, B)).astype(np.int32)
  mask = (rng.random((T, B)) < 0.5).astype(np.float32)
  return babi.BabiBatch(ids, targets, mask)


def models(kind, config):
  """``(init, apply, train_apply)`` on token ids."""
  plain = babi_model(kind, config)
  training = babi_model(kind, config, is_training=True)
  return (babi.one_hot_inputs(plain.init, V),
          babi.one_hot_inputs(plain.apply, V),
          babi.one_hot_inputs(training.apply, V))


@pytest.mark.parametrize(
    "kind", ["dnc", pytest.param("brsdnc", marks=pytest.mark.slow)])
def test_dropout_is_on_in_training_only(kind):
  config = tiny(bypass_dropout=0.5)
  assert uses_dropout(kind, config) and not uses_dropout(kind, tiny())
  init, apply, train_apply = models(kind, config)
  ids = batch().inputs
  params = init(jax.random.PRNGKey(0), ids)
  a = train_apply(params, jax.random.PRNGKey(1), ids)
  b = train_apply(params, jax.random.PRNGKey(2), ids)
  assert float(jnp.max(jnp.abs(a - b))) > 1e-3  # Different masks.
  np.testing.assert_array_equal(
      a, train_apply(params, jax.random.PRNGKey(1), ids))  # Same key, same.
  # Evaluation: no rng, deterministic, and no dropout at all (the output
  # equals the model built without the option).
  np.testing.assert_array_equal(apply(params, ids), apply(params, ids))
  no_dropout = babi.one_hot_inputs(babi_model(kind, tiny()).apply, V)
  np.testing.assert_array_equal(apply(params, ids), no_dropout(params, ids))
  # The training step draws its masks from the key it is given.
  optimizer = make_optimizer(OptimizerConfig())
  task = babi.BabiTask.__new__(babi.BabiTask)  # Only loss and metrics.
  step = jax.jit(make_train_step(train_apply, task, optimizer,
                                 stochastic=True))
  state = TrainState(params, optimizer.init(params))
  loss = [float(step(state, batch(), jax.random.PRNGKey(k))[1]["loss"])
          for k in (1, 2, 1)]
  assert loss[0] != loss[1] and loss[0] == loss[2]


def test_is_training_refused_without_dropout():
  with pytest.raises(ValueError, match="dropout"):
    babi_model("dnc", tiny(), is_training=True)
  with pytest.raises(ValueError, match="dropout"):
    babi_model("lstm", tiny(bypass_dropout=0.5), is_training=True)


def _step_before_dropout(apply_fn, task, optimizer):
  """The open-loop step as it was before ``stochastic`` (for the check
  that models without dropout trace the same program)."""

  def step(state, batch):
    def objective(params):
      logits = apply_fn(params, batch.inputs)
      return task.loss(logits, batch), logits

    (loss, logits), grads = jax.value_and_grad(objective, has_aux=True)(
        state.params)
    metrics = dict(task.metrics(logits, batch), loss=loss)
    updates, opt_state = optimizer.update(grads, state.opt_state,
                                          state.params)
    params = optax.apply_updates(state.params, updates)
    metrics["grad_norm"] = global_norm(grads)
    return TrainState(params, opt_state), metrics

  return step


def test_models_without_dropout_trace_the_same_step():
  init, apply, _ = models("dnc", tiny(bypass_dropout=0.5))
  ids = batch().inputs
  params = init(jax.random.PRNGKey(0), ids)
  optimizer = make_optimizer(OptimizerConfig())
  task = babi.BabiTask.__new__(babi.BabiTask)
  state = TrainState(params, optimizer.init(params))
  now = jax.jit(make_train_step(apply, task, optimizer)).lower(
      state, batch()).as_text()
  before = jax.jit(_step_before_dropout(apply, task, optimizer)).lower(
      state, batch()).as_text()
  assert now == before


def small_preset(name, data, steps=4, **model):
  settings = tasks.preset("babi", name)
  settings["task"].update(data_dir=str(data), eval_stories=0)
  settings["model"].update(hidden_size=8, memory_size=6, word_size=4,
                           num_reads=2, **model)
  settings["loop"].update(steps=steps, batch_size=2, log_every=1,
                          eval_every=0, checkpoint_every=2)
  return settings


def final_params(out, settings, data):
  """The newest checkpoint's parameters of a bAbI run in ``out``."""
  del data
  vocab = babi_data.Vocabulary.load(out / "vocab.json")
  kind = settings["kind"]
  config = cli.babi_model_config(kind, settings["model"], len(vocab))
  init = babi.one_hot_inputs(babi_model(kind, config).init, len(vocab))
  params, _, _ = load_params(out, init, OptimizerConfig(
      **settings["optimizer"]), np.zeros((4, 1), np.int32))
  return params


# slow: dropout in training is test_dropout_is_on_in_training_only; exact
# resume is the fault, Mini-SHRDLU and graph tests' (docs/testing.md).
@pytest.mark.slow
def test_rsdnc_trains_with_dropout_and_resumes_exactly(tmp_path):
  data = write_fixture(tmp_path / "data", stories_per_task=4)
  assert tasks.preset("babi", "rsdnc")["model"]["bypass_dropout"] == 0.1
  settings = small_preset("rsdnc", data)
  full = cli.run_babi(settings, tmp_path / "full", progress=False,
                      preset="rsdnc")
  assert full["step"] == 4 and np.isfinite(full["train"]["loss"])
  first = cli.run_babi(small_preset("rsdnc", data), tmp_path / "cut",
                       progress=False, preset="rsdnc", stop_after=2)
  assert first["step"] == 2 and first["stopped"] == "stop_after"
  resumed = cli.run_babi(small_preset("rsdnc", data), tmp_path / "cut",
                         progress=False, preset="rsdnc", resume=True)
  assert resumed["step"] == 4
  a = final_params(tmp_path / "full", settings, data)
  b = final_params(tmp_path / "cut", settings, data)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
  # The dropout was used: the same run without it ends elsewhere (same
  # initial parameters, same batches).
  cli.run_babi(small_preset("rsdnc", data, bypass_dropout=0.0),
               tmp_path / "off", progress=False, preset="rsdnc")
  c = final_params(tmp_path / "off", settings, data)
  assert any(not np.array_equal(np.asarray(x), np.asarray(y))
             for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(c)))


DATA_PARALLEL_CHECK = """
import jax, numpy as np
from experiments import cli, tasks
assert jax.local_device_count() == 2, jax.devices()
settings = tasks.preset("babi", "rsdnc")
settings["task"].update(data_dir=DATA, eval_stories=0)
settings["model"].update(hidden_size=8, memory_size=6, word_size=4,
                         num_reads=2)
settings["loop"].update(steps=2, batch_size=4, log_every=1, eval_every=0,
                        checkpoint_every=2, data_parallel=True)
summary = cli.run_babi(settings, OUT, progress=False, preset="rsdnc")
assert summary["step"] == 2 and np.isfinite(summary["train"]["loss"])
print("ok", summary["train"]["loss"])
"""


@pytest.mark.slow
def test_dropout_trains_data_parallel(tmp_path):
  data = write_fixture(tmp_path / "data")
  env = dict(os.environ,
             XLA_FLAGS="--xla_force_host_platform_device_count=2")
  result = subprocess.run(
      [sys.executable, "-c", f"DATA = {str(data)!r}\n"
       f"OUT = {str(tmp_path / 'run')!r}\n" + DATA_PARALLEL_CHECK],
      cwd=ROOT, capture_output=True, text=True, timeout=900, env=env)
  assert result.returncode == 0, result.stdout + result.stderr
  assert "ok" in result.stdout
