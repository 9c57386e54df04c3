"""Faults: kill -9 at seeded points, Ctrl-C in an evaluation, a full disk,
and random malformed input to the bAbI parser and the settings.

Every killed run is resumed; the resumed runs must end with parameters
bit-identical to an uninterrupted run's, and log the same losses.
"""

import errno
import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from experiments import babi_data, cli

ROOT = pathlib.Path(__file__).resolve().parents[1]
STEPS, EVERY = 24, 2
TINY = ["--task", "repeat_copy", "--num-bits", "3", "--max-length", "2",
        "--hidden-size", "8", "--memory-size", "4", "--word-size", "4",
        "--num-reads", "1", "--batch-size", "2", "--steps", str(STEPS),
        "--log-every", "1", "--eval-every", "6", "--checkpoint-every",
        str(EVERY), "--eval-batch-size", "4", "--no-progress"]
# kill -9 points: ("step", n) after step n (and its checkpoint, if any);
# ("save", n) inside the write of step n's checkpoint (files written, not
# yet renamed into place). Seeded, ascending, one per process.
_RNG = np.random.default_rng(int(os.environ.get("DNC_FAULT_SEED", "11")))
# CI runs 6 kill points (2 inside a checkpoint write); the 20 run
# under the slow marker (python -m pytest -m slow tests/test_faults.py).
KILLS = int(os.environ.get("DNC_FAULT_KILLS", "6"))
SLOW_KILLS = 20


def _kill_points(kills):
  in_save = min(6, kills // 3)
  saves = sorted(_RNG.choice(np.arange(EVERY, STEPS, EVERY), in_save,
                             replace=False).tolist())
  others = sorted(set(range(1, STEPS)) - set(saves))
  steps = sorted(_RNG.choice(others, kills - in_save,
                             replace=False).tolist())
  points = [("save", s) for s in saves] + [("step", s) for s in steps]
  return sorted(points, key=lambda p: p[1])


def _env(extra=None):
  """Subprocesses share the run's persistent compilation cache (conftest.py
  puts it in the environment), every executable in it: each compiles once
  per session, not once per process (the same executables, so the same
  bits)."""
  return dict(os.environ, JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
              JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0", **(extra or {}))


def train_cli(out, *extra, env=None, timeout=300):
  """A tiny run; evaluation only at the end (a compile less per process)."""
  return subprocess.run(
      [sys.executable, "-m", "experiments.cli", *TINY, "--eval-every", "0",
       "--out", str(out), *extra], cwd=ROOT, capture_output=True, text=True,
      timeout=timeout, env=_env(env))


def final_params(out):
  from experiments.plot import load_run
  return load_run(out)[2]


def losses(out):
  """``{step: loss}``, the last logged value of each step."""
  found = {}
  for line in (out / "metrics.jsonl").read_text().split("\n"):
    if line and '"train"' in line:
      record = json.loads(line)
      found[record["step"]] = record["loss"]
  return found


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
  out = tmp_path_factory.mktemp("whole") / "run"
  result = train_cli(out)
  assert result.returncode == 0, result.stdout + result.stderr
  return out


def test_kill_minus_9_at_seeded_points_resumes_bit_exactly(uninterrupted,
                                                           tmp_path):
  _kill_and_resume(uninterrupted, tmp_path, KILLS)


@pytest.mark.slow
def test_kill_minus_9_at_twenty_points_resumes_bit_exactly(uninterrupted,
                                                           tmp_path):
  _kill_and_resume(uninterrupted, tmp_path, SLOW_KILLS)


def _kill_and_resume(uninterrupted, out_root, kills):
  """kill -9 at ``kills`` seeded points, each run resumed by the next; the
  last resume must end bit-identical to the uninterrupted run."""
  started = time.time()
  out = out_root / "run"
  points = _kill_points(kills)
  killed = 0
  for kind, step in points:
    env = {"DNC_TEST_KILL_IN_SAVE" if kind == "save"
           else "DNC_TEST_KILL_AT_STEP": str(step)}
    extra = ["--resume"] if out.exists() else []
    result = train_cli(out, *extra, env=env)
    assert result.returncode == -signal.SIGKILL, (
        f"{kind} {step}: {result.stdout}{result.stderr}")
    assert "Traceback" not in result.stderr
    killed += 1
  result = train_cli(out, "--resume")
  assert result.returncode == 0, result.stdout + result.stderr
  assert "Traceback" not in result.stdout + result.stderr
  whole = losses(uninterrupted)
  assert losses(out) == whole and len(whole) == STEPS
  a, b = final_params(uninterrupted), final_params(out)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(x, y)
  print(f"\n{killed} kills ({sum(k == 'save' for k, _ in points)} inside a "
        f"checkpoint write), resumed bit-exactly, in "
        f"{time.time() - started:.0f} s")


def test_ctrl_c_during_evaluation_saves_and_resumes_exactly(uninterrupted,
                                                            tmp_path):
  out = tmp_path / "run"
  process = subprocess.Popen(
      [sys.executable, "-m", "experiments.cli", *TINY, "--out", str(out)],
      cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
      env=_env({"DNC_TEST_EVAL_SLEEP": "3"}))
  seen = ""
  while "evaluation started" not in seen:
    line = process.stdout.readline()
    assert line or process.poll() is None, seen
    seen += line
  process.send_signal(signal.SIGINT)
  output, _ = process.communicate(timeout=120)
  assert process.returncode == 130, seen + output
  assert "Traceback" not in output
  summary = json.loads((out / "summary.json").read_text())
  assert summary["stopped"] == "interrupted" and summary["step"] == 6
  assert "6" in os.listdir(out / "checkpoints")
  result = train_cli(out, "--resume", "--eval-every", "6")
  assert result.returncode == 0, result.stdout + result.stderr
  # Evaluations do not change training: the same parameters as the run
  # evaluated only at the end.
  for x, y in zip(jax.tree.leaves(final_params(uninterrupted)),
                  jax.tree.leaves(final_params(out))):
    np.testing.assert_array_equal(x, y)


def test_full_disk_keeps_the_previous_checkpoint(tmp_path, monkeypatch,
                                                 capsys):
  import orbax.checkpoint as ocp
  original = ocp.CheckpointManager.save
  calls = {"n": 0}

  def save(self, step, *args, **kwargs):
    calls["n"] += 1
    if step == 4:
      raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    return original(self, step, *args, **kwargs)

  monkeypatch.setattr(ocp.CheckpointManager, "save", save)
  out = tmp_path / "run"
  argv = TINY + ["--out", str(out), "--steps", "6", "--eval-every", "0"]
  with pytest.raises(SystemExit) as exit_info:
    cli.main(argv)
  assert exit_info.value.code == 2
  err = capsys.readouterr().err
  assert err.count("\n") == 1, err
  assert "No space left on device" in err and "[2] are intact" in err
  assert sorted(os.listdir(out / "checkpoints")) == ["2"]
  monkeypatch.setattr(ocp.CheckpointManager, "save", original)
  assert cli.main(argv + ["--resume"]) == 0
  assert "resumed from step 2" in capsys.readouterr().out


# --- Bad input: every kind gives a one-line error naming the cause. ----------

BAD_RUNS = [
    (["--task", "copy", "--min-repeats", "2"], "does not apply to task"),
    (["--task", "repeat_copy", "--steps", "-1"], "steps must be"),
    (["--task", "repeat_copy", "--learning-rate", "0"], "learning_rate must"),
    (["--task", "babi", "--data-dir", "/nonexistent/babi"], "does not exist"),
    (["--task", "babi"], "--data-dir is required"),
    (["--task", "babi", "--data-dir", ".", "--valid-fraction", "0"],
     "--valid-fraction must be in (0, 1)"),
    (["--task", "babi", "--data-dir", ".", "--tasks", "1,x"],
     "--tasks must be"),
    (["--resume"], "--task is required"),
]


@pytest.mark.parametrize("argv,message", BAD_RUNS)
def test_bad_runs_say_why_and_create_nothing(argv, message, tmp_path,
                                             capsys):
  out = tmp_path / "never"
  with pytest.raises(SystemExit) as exit_info:
    cli.main(argv + ["--out", str(out)])
  assert exit_info.value.code == 2
  err = capsys.readouterr().err
  assert message in err and err.count("\n") == 1, err
  assert not out.exists()


def test_out_that_cannot_be_created(tmp_path, capsys):
  blocker = tmp_path / "file"
  blocker.write_text("x")
  with pytest.raises(SystemExit):
    cli.main(TINY + ["--out", str(blocker / "run")])
  err = capsys.readouterr().err
  assert "cannot create the run folder" in err and err.count("\n") == 1


@pytest.mark.parametrize("command", [
    ["experiments.plot", "--run"],
    ["experiments.babi_eval", "--data-dir", ".", "--checkpoint"]])
def test_mistyped_run_folder_creates_nothing(command, tmp_path):
  missing = tmp_path / "tpyo"
  result = subprocess.run([sys.executable, "-m", *command, str(missing)],
                          cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
  assert result.returncode == 2
  assert "not a" in result.stderr and "Traceback" not in result.stderr
  assert not missing.exists()


def babi_file(tmp_path, data: bytes) -> pathlib.Path:
  path = tmp_path / "qa1_single-supporting-fact_train.txt"
  path.write_bytes(data)
  return path


@pytest.mark.parametrize("data,message", [
    (b"", "holds no stories"),
    (b"\n\n", "holds no stories"),
    (b"1 Mary went home.\n2 Where is Mary?\thome\xff\t1\n",
     "line 2: not UTF-8"),
])
def test_bad_babi_files_name_file_and_line(tmp_path, data, message):
  path = babi_file(tmp_path, data)
  with pytest.raises(babi_data.BabiFormatError, match=message) as info:
    babi_data.parse_file(path)
  assert str(path) in str(info.value)


def test_unreadable_babi_file(tmp_path):
  path = babi_file(tmp_path, b"1 Mary went home.\n")
  path.chmod(0)
  if os.access(path, os.R_OK):
    pytest.skip("running as root: files are always readable")
  with pytest.raises(babi_data.BabiFormatError, match="cannot be read"):
    babi_data.parse_file(path)


_LINE = st.one_of(
    st.builds(lambda n, words, q, a: f"{n} {words}" + (f"?\t{a}\t1" if q
                                                       else "."),
              st.integers(0, 4), st.text(min_size=0, max_size=12),
              st.booleans(), st.text(max_size=5)),
    st.text(max_size=20))


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(_LINE, max_size=8), junk=st.binary(max_size=6))
def test_parser_on_random_input_parses_or_names_the_cause(tmp_path, lines,
                                                          junk):
  path = babi_file(tmp_path, "\n".join(lines).encode("utf-8", "surrogatepass")
                   + junk)
  try:
    stories = babi_data.parse_file(path)
  except babi_data.BabiFormatError as error:
    assert str(path) in str(error)
    return
  for story in stories:
    assert len(story.answers) == story.tokens.count("-")


def test_every_preset_validates():
  from experiments import graph_cli  # The graph tasks' own command line.
  for task, presets in cli.tasks.PRESETS.items():
    validate = (graph_cli.validate_settings
                if task in graph_cli.graph.TASKS else cli.validate_settings)
    for name in presets:
      settings = cli.tasks.preset(task, name)
      if task == "babi":
        settings["task"]["data_dir"] = "."
      validate(task, settings)


_VALUE = st.one_of(st.integers(-3, 3), st.floats(allow_nan=True),
                   st.text(max_size=4), st.none(), st.booleans())


@settings(max_examples=150, deadline=None)
@given(task=st.sampled_from(["copy", "repeat_copy",
                             "dynamic_allocation_copy", "babi"]),
       section=st.sampled_from(["task", "model", "optimizer", "loop"]),
       field=st.sampled_from(["num_bits", "min_length", "max_length",
                              "memory_size", "hidden_size", "learning_rate",
                              "momentum", "steps", "batch_size", "patience",
                              "valid_fraction", "tasks", "eval_stories",
                              "controller", "name", "nonsense"]),
       value=_VALUE)
def test_settings_validation_names_the_cause(task, section, field, value):
  settings = cli.tasks.preset(task, "dnc1" if task == "babi" else "default")
  settings[section][field] = value
  try:
    cli.validate_settings(task, settings)
  except ValueError as error:
    assert str(error) and "\n" not in str(error)


@settings(max_examples=100, deadline=None)
@given(argv=st.lists(st.sampled_from(
    ["--task", "copy", "babi", "--steps", "0", "-1", "x", "--memory-size",
     "--optimizer", "sgd", "--tasks", "1,2", "--no-validation", "--preset",
     "nope", "--valid-fraction", "1.5", "nan"]), max_size=6))
def test_random_command_lines_parse_or_name_the_cause(argv):
  parser, generated = cli.build_parser()
  try:
    args = parser.parse_args(argv)
  except SystemExit as exit_info:
    assert exit_info.code == 2
    return
  if args.task is None:
    return
  try:
    settings = cli.settings_from_args(args, generated)
    cli.validate_settings(args.task, settings)
  except ValueError as error:
    assert str(error) and "\n" not in str(error)


def test_a_refused_resume_leaves_the_run_as_it_was(tmp_path, capsys):
  # A resume with a changed optimiser setting is refused by the checkpoint;
  # the run folder's settings must not keep the refused value, or the next
  # plain --resume is refused as well.
  out = tmp_path / "run"
  argv = TINY + ["--out", str(out), "--steps", "2", "--eval-every", "0"]
  assert cli.main(argv) == 0
  before = (out / "settings.json").read_text()
  with pytest.raises(SystemExit) as exit_info:
    cli.main(["--out", str(out), "--resume", "--learning-rate", "0.5",
              "--steps", "3"])
  assert exit_info.value.code == 2
  err = capsys.readouterr().err
  assert "belongs to a different run" in err and "learning_rate" in err
  assert "(to go on at the new value: --allow-change learning_rate)" in err
  assert (out / "settings.json").read_text() == before
  assert cli.main(["--out", str(out), "--resume", "--steps", "3"]) == 0
  assert "resumed from step 2" in capsys.readouterr().out


def test_a_refused_sweep_resume_leaves_the_settings_as_they_were(tmp_path,
                                                                capsys):
  out = tmp_path / "sweep"
  argv = TINY + ["--out", str(out), "--steps", "1", "--eval-every", "0",
                 "--seeds", "2"]
  assert cli.main(argv) == 0
  before = (out / "settings.json").read_text()
  assert json.loads(before)["sweep"]["seeds"] == [0, 1]
  with pytest.raises(SystemExit) as exit_info:
    cli.main(["--out", str(out), "--resume", "--learning-rate", "0.5",
              "--steps", "2"])
  assert exit_info.value.code == 2
  assert "learning_rate" in capsys.readouterr().err
  assert (out / "settings.json").read_text() == before


def test_allow_change_lets_a_resumed_run_take_a_new_learning_rate(tmp_path,
                                                                   capsys):
  out = tmp_path / "run"
  argv = TINY + ["--out", str(out), "--steps", "2", "--eval-every", "0"]
  assert cli.main(argv) == 0
  capsys.readouterr()
  first = json.loads((out / "settings.json").read_text())
  first_rate = first["settings"]["optimizer"]["learning_rate"]
  assert first_rate != 0.5
  assert cli.main(["--out", str(out), "--resume", "--steps", "3",
                   "--allow-change", "learning_rate",
                   "--learning-rate", "0.5"]) == 0
  assert "changed from step 2 on: optimizer.learning_rate" in (
      capsys.readouterr().out)
  lines = [json.loads(l) for l in
           (out / "metrics.jsonl").read_text().splitlines()]
  (change,) = [l for l in lines if l["kind"] == "change"]
  assert change["step"] == 2 and change["changed"] == [
      f"optimizer.learning_rate: saved {first_rate!r}, now 0.5"]
  # Later checkpoints hold the new rate: a plain resume continues at it.
  assert cli.main(["--out", str(out), "--resume", "--steps", "4"]) == 0
  # Only the named field may change; the others are still refused.
  with pytest.raises(SystemExit):
    cli.main(["--out", str(out), "--resume", "--steps", "5",
              "--allow-change", "learning_rate", "--max-grad-norm", "3"])
  err = capsys.readouterr().err
  assert "max_grad_norm: saved" in err
  assert "--allow-change max_grad_norm" in err
  with pytest.raises(SystemExit):
    cli.main(TINY + ["--out", str(tmp_path / "new"), "--allow-change",
                     "learning_rate"])
  assert "--allow-change applies to --resume" in capsys.readouterr().err
  assert not (tmp_path / "new").exists()


def test_only_shape_free_optimiser_settings_may_change_on_resume(tmp_path):
  from experiments import loop
  with pytest.raises(ValueError, match="model.memory_size"):
    loop.train(init_fn=None, apply_fn=None, task=None,
               optimizer_config=None, loop_config=None, out_dir=tmp_path,
               run_record={}, resume=True, may_change=["model.memory_size"])
  with pytest.raises(ValueError, match="resumed run"):
    loop.train(init_fn=None, apply_fn=None, task=None,
               optimizer_config=None, loop_config=None, out_dir=tmp_path,
               run_record={}, may_change=["optimizer.learning_rate"])
