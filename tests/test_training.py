"""The training loop: steps, exact resume, checkpoints, the command line."""

import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from experiments import train as train_cli
from experiments.checkpoints import CheckpointError, describe_differences
from experiments.plot import load_run
from experiments.plot import main as plot_main

ROOT = pathlib.Path(__file__).resolve().parents[1]


def tiny_settings(**loop):
  settings = {
      "task": dict(num_bits=3, min_length=1, max_length=2, min_repeats=1,
                   max_repeats=2),
      "model": dict(controller="lstm", hidden_size=8, memory_size=4,
                    word_size=4, num_reads=1),
      "optimizer": dict(name="rmsprop", learning_rate=1e-3),
      "loop": dict(steps=6, batch_size=4, log_every=1, eval_every=3,
                   checkpoint_every=3),
      "eval_batch_size": 8,
  }
  settings["loop"].update(loop)
  return settings


def run(settings, out, **kw):
  return train_cli.run(settings, "repeat_copy", out, progress=False, **kw)


def params_of(out):
  return load_run(pathlib.Path(out))[2]


def assert_trees_equal(a, b):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
  out = tmp_path_factory.mktemp("full")
  summary = run(tiny_settings(), out)
  return out, summary


def test_training_runs_logs_and_evaluates(uninterrupted):
  out, summary = uninterrupted
  assert summary["step"] == 6 and summary["stopped"] is None
  assert np.isfinite(summary["train"]["loss"])
  assert set(summary["eval"]) >= {"valid/bit_errors", "valid/perfect",
                                  "longer/bit_errors", "longer/perfect"}
  lines = [json.loads(l) for l in (out / "metrics.jsonl").read_text().split("\n")
           if l]
  assert [l["step"] for l in lines if l["kind"] == "train"] == list(range(1, 7))
  assert [l["step"] for l in lines if l["kind"] == "eval"] == [3, 6]
  # Training moved the parameters away from their initial values.
  from experiments.models import unrolled_dnc
  from dnc_jax import DNCConfig
  saved = json.loads((out / "summary.json").read_text())
  assert saved["step"] == 6
  params = params_of(out)
  task, config, _ = load_run(out)
  init = unrolled_dnc(config).init(jax.random.PRNGKey(0),
                                   task.sample(np.random.default_rng(0),
                                               1).inputs)
  assert any(not np.allclose(a, b) for a, b in zip(jax.tree.leaves(init),
                                                   jax.tree.leaves(params)))


def test_interrupted_run_resumes_to_the_same_parameters(uninterrupted,
                                                        tmp_path):
  full_out, _ = uninterrupted
  first = run(tiny_settings(), tmp_path, stop_after=4)
  assert first["step"] == 4 and first["stopped"] == "stop_after"
  # The interrupted run checkpointed its last step (4), beside step 3.
  assert sorted(os.listdir(tmp_path / "checkpoints")) == ["3", "4"]
  resumed = run(tiny_settings(), tmp_path, resume=True)
  assert resumed["step"] == 6
  assert_trees_equal(params_of(tmp_path), params_of(full_out))


def test_resume_can_extend_steps_but_not_change_the_model(uninterrupted,
                                                          tmp_path):
  full_out, _ = uninterrupted
  shutil.copytree(full_out, tmp_path / "run")
  longer = run(tiny_settings(steps=7), tmp_path / "run", resume=True)
  assert longer["step"] == 7
  other = tiny_settings()
  other["model"]["memory_size"] = 5
  with pytest.raises(CheckpointError, match="memory_size: saved 4, now 5"):
    run(other, tmp_path / "run", resume=True)
  with pytest.raises(CheckpointError, match="already holds checkpoints"):
    run(tiny_settings(), tmp_path / "run")


def test_a_run_saved_before_a_setting_existed_resumes_with_it_off():
  # The long bAbI run was saved before the later DNC fixes (all off by
  # default) joined the record: it must resume with them off, not on.
  saved = {"model": {"memory_size": 4}, "loop": {"batch_size": 4}}
  off = {"model": {"memory_size": 4, "content_masking": False,
                   "deallocation": False, "bypass_dropout": 0.0},
         "loop": {"batch_size": 4}}
  assert describe_differences(saved, off) == []
  on = {"model": {"memory_size": 4, "content_masking": True,
                  "bypass_dropout": 0.1}, "loop": {"batch_size": 4}}
  assert describe_differences(saved, on) == [
      "model.bypass_dropout: saved '<absent>', now 0.1",
      "model.content_masking: saved '<absent>', now True"]
  # The value's type counts (0 == False in Python), and only the listed
  # settings, under their own section, may be absent.
  assert describe_differences(
      saved, {"model": {"memory_size": 4, "deallocation": 0},
              "loop": {"batch_size": 4}}) == [
                  "model.deallocation: saved '<absent>', now 0"]
  assert describe_differences(
      saved, {"model": {"memory_size": 4},
              "loop": {"batch_size": 4, "content_masking": False}}) == [
                  "loop.content_masking: saved '<absent>', now False"]
  assert describe_differences(
      saved, {"model": {"memory_size": 4, "word_size": 4},
              "loop": {"batch_size": 4}}) == [
                  "model.word_size: saved '<absent>', now 4"]


def corrupt(folder):
  for path in folder.rglob("*"):
    if path.is_file() and path.stat().st_size > 0:
      path.write_bytes(b"garbage")


def test_corrupt_checkpoint_gives_a_clear_error(uninterrupted, tmp_path,
                                                capsys):
  full_out, _ = uninterrupted
  shutil.copytree(full_out, tmp_path / "run")
  # The newest is corrupt: resume falls back to the older one, naming it.
  corrupt(tmp_path / "run" / "checkpoints" / "6")
  summary = run(tiny_settings(steps=7), tmp_path / "run", resume=True)
  printed = capsys.readouterr()
  assert "checkpoints/6 could not be read" in printed.out
  assert "resumed from step 3" in printed.out
  assert summary["step"] == 7
  assert "Traceback" not in printed.out + printed.err
  # Every checkpoint corrupt: one clear error.
  for step in os.listdir(tmp_path / "run" / "checkpoints"):
    corrupt(tmp_path / "run" / "checkpoints" / step)
  with pytest.raises(CheckpointError, match="no intact checkpoint.*corrupt"):
    run(tiny_settings(steps=8), tmp_path / "run", resume=True)


def test_plot_writes_a_png(uninterrupted, tmp_path):
  full_out, _ = uninterrupted
  assert plot_main(["--run", str(full_out), "--out", str(tmp_path)]) == 0
  png = tmp_path / "memory-trained-0.png"
  assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  assert png.stat().st_size > 10_000


@pytest.mark.parametrize("argv,message", [
    (["--task", "repeat_copy", "--memory-size", "0"], "memory_size must be"),
    (["--task", "copy", "--min-repeats", "2"],
     "--min-repeats does not apply to task 'copy'"),
    (["--task", "copy", "--preset", "nope"], "has no preset 'nope'"),
    (["--task", "repeat_copy", "--optimizer", "sgd"], "optimizer must be one"),
    (["--task", "repeat_copy", "--steps", "0"], "steps must be an int >= 1"),
])
def test_bad_flags_give_clear_messages(argv, message, capsys, tmp_path):
  with pytest.raises(SystemExit) as exit_info:
    train_cli.main(argv + ["--out", str(tmp_path)])
  assert exit_info.value.code == 2
  assert message in capsys.readouterr().err


def test_ctrl_c_saves_a_checkpoint_and_resume_finishes(tmp_path):
  out = tmp_path / "run"
  command = [sys.executable, "-m", "experiments.train", "--task",
             "repeat_copy", "--hidden-size", "8", "--memory-size", "4",
             "--word-size", "4", "--num-reads", "1", "--steps", "100000",
             "--checkpoint-every", "5", "--eval-every", "0",
             "--no-progress", "--out", str(out)]
  process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
  deadline = time.time() + 240

  def saved_steps():
    folder = out / "checkpoints"
    return [p.name for p in folder.iterdir() if p.name.isdigit()] if (
        folder.exists()) else []

  while not saved_steps():
    assert process.poll() is None, process.stdout.read()
    assert time.time() < deadline, "no checkpoint within 4 minutes"
    time.sleep(0.5)
  process.send_signal(signal.SIGINT)
  output, _ = process.communicate(timeout=120)
  assert process.returncode == 130, output
  summary = json.loads((out / "summary.json").read_text())
  assert summary["stopped"] == "interrupted"
  stopped_at = summary["step"]
  assert stopped_at >= 5
  assert str(stopped_at) in os.listdir(out / "checkpoints")
  command[command.index("--steps") + 1] = str(stopped_at + 5)
  resumed = subprocess.run(command + ["--resume"], cwd=ROOT,
                           capture_output=True, text=True, timeout=300)
  assert resumed.returncode == 0, resumed.stdout + resumed.stderr
  assert f"resumed from step {stopped_at}" in resumed.stdout
  assert json.loads((out / "summary.json").read_text())["step"] == (
      stopped_at + 5)


def _poisoned_from(monkeypatch, first_bad_step):
  """Makes every train step from ``first_bad_step`` (0-based) return NaN
  parameters and loss, as a diverging run would."""
  # pylint: disable-next=g-import-not-at-top
  from experiments import loop
  build = loop.build_step

  def build_step(*args, **kwargs):
    inner = build(*args, **kwargs)

    def step(state, batch, number):
      state, metrics = inner(state, batch, number)
      if number >= first_bad_step:
        nan = np.float32(np.nan)
        state = state._replace(params=jax.tree.map(lambda x: x * nan,
                                                   state.params))
        metrics = dict(metrics, loss=metrics["loss"] * nan)
      return state, metrics
    return step

  monkeypatch.setattr(loop, "build_step", build_step)


@pytest.mark.parametrize("log_every", [1, 100])
def test_a_diverged_run_stops_and_saves_nothing_non_finite(
    log_every, monkeypatch, tmp_path, capsys):
  # pylint: disable-next=g-import-not-at-top
  from experiments import loop
  _poisoned_from(monkeypatch, 3)  # Steps 4 on (1-based) diverge.
  out = tmp_path / "run"
  with pytest.raises(loop.TrainingDiverged) as error:
    run(tiny_settings(log_every=log_every, eval_every=0, steps=7), out)
  # Logged every step: the loss line of step 4 stops it; logged rarely:
  # the parameters' check before the checkpoint of step 6.
  which = "loss nan" if log_every == 1 else "parameters not finite"
  step = 4 if log_every == 1 else 6
  assert f"diverged by step {step}: {which}" in str(error.value)
  assert str(out / "checkpoints") in str(error.value)
  assert sorted(p.name for p in (out / "checkpoints").iterdir()
                if p.name.isdigit()) == ["3"]
  assert np.all([np.all(np.isfinite(x))
                 for x in jax.tree.leaves(params_of(out))])
  # The command line says so in one line, exit status 3.
  with pytest.raises(SystemExit) as exit_info:
    train_cli.main(["--task", "repeat_copy", "--hidden-size", "8",
                    "--memory-size", "4", "--word-size", "4",
                    "--num-reads", "1", "--batch-size", "4", "--steps", "6",
                    "--log-every", "1", "--checkpoint-every", "3",
                    "--no-progress", "--out", str(tmp_path / "cli")])
  assert exit_info.value.code == 3
  err = capsys.readouterr().err
  assert "error: training diverged by step 4" in err
  assert "Traceback" not in err


def test_finite_checks_name_what_is_not_finite():
  # pylint: disable-next=g-import-not-at-top
  from experiments import loop
  loop.check_finite_metrics({"loss": np.array([1.0, 2.0]),
                             "grad_norm": 3.0, "other": np.nan}, 7)
  with pytest.raises(loop.TrainingDiverged,
                     match=r"by step 7: loss \[1.0, inf\]"):
    loop.check_finite_metrics({"loss": np.array([1.0, np.inf])}, 7)
  params = {"layer": {"w": np.ones(3), "b": np.array([0.0, np.nan])}}
  with pytest.raises(loop.TrainingDiverged, match=r"\['layer'\]\['b'\]"):
    loop.check_finite_params(params, 2)
  loop.check_finite_params({"w": np.ones(2)}, 2)
