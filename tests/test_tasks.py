"""The task protocol: a closed-loop toy task with a curriculum, trained by
the same loop, checkpoints and resume as every other task."""

import json
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from dnc_jax import DNCConfig
from experiments import loop, tasks
from experiments.models import dnc_model
from experiments.tasks.base import Batch, Task, TaskBase


class FeedbackToy(TaskBase):
  """Echo bits, with the network's own previous output fed back in.

  Input at step t: the bit ``x_t`` and the network's output at ``t - 1``
  (closed loop, as DAgger feeds a shortest-path network its own moves).
  The curriculum lengthens the sequences after each evaluation.
  """

  name = "feedback_toy"
  input_size = 2
  output_size = 1
  eval_batch_size = 4

  def __init__(self, length=2, longest=4):
    self.length, self.longest = length, longest
    self.closed_loop_steps = 0

  def sample(self, rng, batch_size):
    bits = rng.integers(0, 2, (self.length, batch_size, 1)).astype(
        np.float32)
    return Batch(bits, bits, np.ones((self.length, batch_size), np.float32))

  def loss(self, outputs, batch):
    per = optax.sigmoid_binary_cross_entropy(outputs, batch.targets)
    return jnp.sum(per[..., 0] * batch.mask) / outputs.shape[1]

  def metrics(self, outputs, batch):
    wrong = (outputs > 0) != (batch.targets > 0.5)
    return {"bit_errors": jnp.mean(jnp.sum(wrong[..., 0], 0))}

  def make_train_step(self, model, optimizer):
    core = model.core

    def rollout(params, bits, key):
      batch_size = bits.shape[1]
      noise = 0.01 * jax.random.normal(key, (batch_size, 1), bits.dtype)

      def body(carry, x_t):
        state, previous = carry
        fed_back = jax.lax.stop_gradient(jax.nn.sigmoid(previous)) + noise
        y, state = core.step(params, jnp.concatenate([x_t, fed_back], -1),
                             state)
        return (state, y), y

      start = (core.initial_state(params, batch_size),
               jnp.zeros((batch_size, 1), bits.dtype))
      _, outputs = jax.lax.scan(body, start, bits)
      return outputs

    def step(state, batch, key):
      self.closed_loop_steps += 1  # Counts traces, not steps.

      def objective(params):
        outputs = rollout(params, batch.inputs, key)
        return self.loss(outputs, batch), outputs

      (value, outputs), grads = jax.value_and_grad(objective, has_aux=True)(
          state.params)
      updates, opt_state = optimizer.update(grads, state.opt_state,
                                            state.params)
      params = optax.apply_updates(state.params, updates)
      return loop.TrainState(params, opt_state), dict(
          self.metrics(outputs, batch), loss=value,
          key_sum=jnp.sum(jax.random.key_data(key)).astype(jnp.float32))

    return step

  def evaluate(self, predict, params, step):
    results = super().evaluate(lambda p, x: predict(
        p, jnp.concatenate([x, jnp.zeros_like(x)], -1)), params, step)
    return dict(results, **{"valid/length": float(self.length)})

  def curriculum_state(self):
    return {"length": self.length}

  def restore_curriculum(self, state):
    self.length = state["length"]

  def after_evaluation(self, results):
    if self.length < self.longest:
      self.length += 1
      return {"length": self.length}
    return {}


CONFIG = DNCConfig(output_size=1, input_size=2, hidden_size=8, memory_size=4,
                   word_size=4, num_reads=1)


def train_toy(out, **kw):
  model = dnc_model(CONFIG)
  task = FeedbackToy()
  summary = loop.train(
      init_fn=lambda rng, x: model.init(rng, jnp.concatenate(
          [x, x], -1)), apply_fn=model.apply, task=task,
      optimizer_config=loop.OptimizerConfig(name="adam", learning_rate=1e-2),
      loop_config=loop.LoopConfig(steps=6, batch_size=3, log_every=1,
                                  eval_every=2, checkpoint_every=2),
      out_dir=out, run_record={"task": "feedback_toy"}, progress=False,
      model=model, **kw)
  return summary, task


def params_of(out):
  model = dnc_model(CONFIG)
  params, _, _ = loop.load_params(
      out, model.init, loop.OptimizerConfig(name="adam", learning_rate=1e-2),
      np.zeros((2, 1, 2), np.float32))
  return params


def lines(out):
  return [json.loads(l) for l in (out / "metrics.jsonl").read_text().split(
      "\n") if l]


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
  out = tmp_path_factory.mktemp("toy")
  summary, task = train_toy(out)
  return out, summary, task


def test_toy_satisfies_the_protocol():
  assert isinstance(FeedbackToy(), Task)
  for name in ("repeat_copy", "copy", "dynamic_allocation_copy"):
    assert isinstance(tasks.bit.TASKS[name](), Task)


def test_closed_loop_step_trains_with_curriculum(toy_run):
  out, summary, task = toy_run
  assert summary["step"] == 6
  # The task's own step ran (traced once per sequence length).
  assert task.closed_loop_steps >= 1
  logged = lines(out)
  train = [l for l in logged if l["kind"] == "train"]
  assert [l["step"] for l in train] == list(range(1, 7))
  # The key is folded with the step: different every step.
  assert len({l["key_sum"] for l in train}) == 6
  # The curriculum moved after each evaluation and is in the metrics.
  moves = [l["length"] for l in logged if l["kind"] == "curriculum"]
  assert moves == [3, 4]
  evals = [l for l in logged if l["kind"] == "eval"]
  assert [e["curriculum"]["length"] for e in evals] == [2, 3, 4]


# slow: test_shrdlu_agent.py's resume test resumes a closed-loop task with
# a curriculum exactly (docs/testing.md).
@pytest.mark.slow
def test_closed_loop_resume_is_exact(toy_run, tmp_path):
  full, _, _ = toy_run
  first, task = train_toy(tmp_path, stop_after=3)
  assert first["stopped"] == "stop_after" and task.length == 3
  resumed, task = train_toy(tmp_path, resume=True)
  assert resumed["step"] == 6 and task.length == 4
  for a, b in zip(jax.tree.leaves(params_of(full)),
                  jax.tree.leaves(params_of(tmp_path))):
    np.testing.assert_array_equal(a, b)
  key_sums = {l["step"]: l["key_sum"] for l in lines(full)
              if l["kind"] == "train"}
  assert {l["step"]: l["key_sum"] for l in lines(tmp_path)
          if l["kind"] == "train"} == key_sums


def test_closed_loop_core_shares_the_unrolled_parameters():
  model = dnc_model(CONFIG)
  inputs = np.random.default_rng(0).normal(size=(3, 2, 2)).astype(np.float32)
  params = model.init(jax.random.PRNGKey(0), inputs)
  unrolled = model.apply(params, inputs)
  state = model.core.initial_state(params, 2)
  stepped = []
  for x in inputs:
    y, state = model.core.step(params, x, state)
    stepped.append(y)
  np.testing.assert_allclose(np.stack(stepped), unrolled, rtol=1e-5,
                             atol=1e-6)


def test_presets_are_data_in_one_registry():
  assert set(tasks.PRESETS) == {"copy", "repeat_copy",
                                "dynamic_allocation_copy", "babi", "shrdlu",
                                "traversal", "inference", "shortest_path"}
  json.dumps(tasks.PRESETS)  # Plain data.
  with pytest.raises(ValueError, match="has no preset 'nope'"):
    tasks.preset("babi", "nope")


@pytest.mark.parametrize("old", ["experiments.bit_tasks",
                                 "experiments.babi_task",
                                 "experiments.presets"])
def test_old_module_names_warn_and_work(old):
  import importlib
  import sys
  sys.modules.pop(old, None)
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    module = importlib.import_module(old)
  assert any(issubclass(w.category, DeprecationWarning) for w in caught)
  assert module.__name__ == old


OLD_TRAIN_FLAGS = """--task --preset --num-bits --min-length --max-length
--min-repeats --max-repeats --num-sequences --controller --hidden-size --num-layers
--memory-size --word-size --num-reads --num-writes --clip-value
--strength-squash --link-sparsity --optimizer --learning-rate
--max-grad-norm --momentum --steps --batch-size --seed --log-every
--eval-every --checkpoint-every --no-temporal-links --target-bit-errors
--eval-batch-size --out --resume --no-progress""".split()
OLD_BABI_FLAGS = """--data-dir --preset --out --resume --tasks --steps
--batch-size --learning-rate --momentum --max-grad-norm --seed --valid-fraction
--eval-every --eval-stories --checkpoint-every --log-every --patience
--remat-chunk --hidden-size --memory-size --word-size --num-reads
--data-parallel --no-progress""".split()


def test_every_old_flag_is_still_there():
  from experiments import cli
  parser, _ = cli.build_parser()
  flags = {o for a in parser._actions for o in a.option_strings}
  assert set(OLD_TRAIN_FLAGS) <= flags, set(OLD_TRAIN_FLAGS) - flags
  parser, _ = cli.build_parser("dnc-babi-train", "babi")
  flags = {o for a in parser._actions for o in a.option_strings}
  assert set(OLD_BABI_FLAGS) <= flags, set(OLD_BABI_FLAGS) - flags


def test_kernel_build_is_announced(monkeypatch, capsys):
  import time as time_module
  from dnc_jax import cpu_kernels
  from experiments import cli
  monkeypatch.setattr(cpu_kernels, "available",
                      lambda: time_module.sleep(0.5) or True)
  cli.ensure_kernels(wait_before_saying=0.05)
  out = capsys.readouterr().out.splitlines()
  assert out[0].startswith("building the CPU kernels (first use")
  assert out[1].startswith("done in")
  monkeypatch.setattr(cpu_kernels, "available", lambda: True)
  cli.ensure_kernels()
  assert capsys.readouterr().out == ""


def test_resume_takes_the_saved_settings(tmp_path, capsys):
  from experiments import cli
  out = str(tmp_path / "run")
  tiny = ["--task", "copy", "--num-bits", "3", "--max-length", "2",
          "--hidden-size", "8", "--memory-size", "4", "--word-size", "4",
          "--num-reads", "1", "--batch-size", "2", "--steps", "2",
          "--eval-every", "0", "--eval-batch-size", "2", "--no-progress"]
  assert cli.main(tiny + ["--out", out]) == 0
  capsys.readouterr()
  # No --task, no model flags: all from the run folder; --steps overrides.
  assert cli.main(["--out", out, "--resume", "--steps", "3",
                   "--no-progress"]) == 0
  printed = capsys.readouterr().out
  assert "--steps 3 overrides the run's saved 2" in printed
  assert "resumed from step 2" in printed
  assert printed.count("overrides") == 1
  with pytest.raises(SystemExit):
    cli.main(["--out", out, "--resume", "--memory-size", "5"])
  err = capsys.readouterr()
  assert "--memory-size 5 overrides the run's saved 4" in err.out
  assert "memory_size: saved 4, now 5" in err.err
