"""Sweeps: members trained as one vmapped step, sharded and multi-process."""

import json
import os
import pathlib
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest

from dnc_jax import DNCConfig
from experiments import cli, distributed, sweep
from experiments.checkpoints import Checkpointer
from experiments.loop import (OptimizerConfig, TrainState, make_optimizer,
                              make_train_step)
from experiments.models import unrolled_dnc
from experiments.tasks import bit

sys.path.insert(0, str(pathlib.Path(__file__).parent))
import sweep_worker  # noqa: E402  pylint: disable=wrong-import-position

ROOT = pathlib.Path(__file__).resolve().parent.parent
WORKER = pathlib.Path(__file__).parent / "sweep_worker.py"
SETTINGS = sweep_worker.SETTINGS
# Subprocesses share a persistent compilation cache: each step compiles once.


def _setup(backend="fused"):
  task = bit.TASKS["copy"](**SETTINGS["task"])
  config = DNCConfig(output_size=task.output_size, input_size=task.input_size,
                     **dict(SETTINGS["model"], memory_backend=backend))
  return task, unrolled_dnc(config)


def _flat(tree):
  return np.concatenate([np.asarray(x).ravel() for x in jax.tree.leaves(tree)])


def _members():
  base = OptimizerConfig(**SETTINGS["optimizer"])
  return sweep.make_members(base, [3, 7], {"learning_rate": [1e-3, 3e-2]})[:3]


def test_vmapped_kernel_step_equals_separate_member_steps():
  """3 members (2 seeds x 2 learning rates, seed 3 twice): one vmapped step
  on the fused kernels == each member's own unbatched step. A step that
  shared parameters, data or hyper-parameters across members fails."""
  task, model = _setup("fused")
  members = _members()
  mesh = distributed.make_mesh(len(members), 4, 1)
  sample = sweep.MemberSampler(task, members, 4, mesh)
  inputs = np.asarray(sample.one(3, 0).inputs)
  host_state = sweep.initial_members(model.init, members, inputs)
  lone = model.init(jax.random.PRNGKey(7), inputs)  # As dnc-train --seed 7.
  np.testing.assert_array_equal(
      _flat(jax.tree.map(lambda x: x[2], host_state.params)), _flat(lone))
  step = sweep.make_sweep_step(model.apply, task, members[0].optimizer, mesh)
  hlo = step.lower(sweep.place_state(host_state, mesh), sample(0)).as_text()
  assert "DncMemoryStep" in hlo  # The fused kernel runs under vmap.
  state = sweep.place_state(host_state, mesh)
  for s in range(2):
    state, metrics = step(state, sample(s))
  state = jax.device_get(state)
  make = sweep.sweep_optimizer(members[0].optimizer)
  for m, member in enumerate(members):
    one = jax.jit(make_train_step(model.apply, task,
                                  make(member.optimizer)))
    own = jax.tree.map(lambda x, m=m: x[m], host_state)
    for s in range(2):
      own, own_metrics = one(own, sample.one(member.seed, s))
    mine = jax.tree.map(lambda x, m=m: x[m], state.params)
    np.testing.assert_allclose(_flat(mine), _flat(own.params), rtol=1e-6,
                               atol=1e-7)
    np.testing.assert_allclose(metrics["loss"][m], own_metrics["loss"],
                               rtol=1e-6)
  # The members really differ (else the equality above proves little).
  p = [_flat(jax.tree.map(lambda x, m=m: x[m], state.params))
       for m in range(3)]
  assert not np.allclose(p[0], p[1]) and not np.allclose(p[0], p[2])


def test_members_in_a_loop_equal_members_vmapped():
  """members_per_step 1 and 2 (a loop inside the program, the CPU's choice
  for large memories) give the all-at-once step's values; a single member
  is stepped without vmap."""
  task, model = _setup("fused")
  members = _members()
  mesh = distributed.make_mesh(len(members), 4, 1)
  sample = sweep.MemberSampler(task, members, 4, mesh)
  host = sweep.initial_members(model.init, members,
                               np.asarray(sample.one(3, 0).inputs))
  results = {}
  for per_step in (None, 1, 2):
    step = sweep.make_sweep_step(model.apply, task, members[0].optimizer,
                                 mesh, per_step)
    state = sweep.place_state(host, mesh)
    for s in range(2):
      state, metrics = step(state, sample(s))
    results[per_step] = (_flat(jax.device_get(state).params),
                         np.asarray(metrics["loss"]))
  for per_step in (1, 2):
    np.testing.assert_allclose(results[per_step][0], results[None][0],
                               rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(results[per_step][1], results[None][1],
                               rtol=1e-6)
  loops = {per_step: sweep.make_sweep_step(
      model.apply, task, members[0].optimizer, mesh, per_step).lower(
          sweep.place_state(host, mesh), sample(0)).as_text().count("while")
           for per_step in (None, 1)}
  assert loops[1] > loops[None]  # One member at a time: a loop around it.
  assert sweep.auto_members_per_step({"memory_size": 16}) is None
  assert sweep.auto_members_per_step({"hidden_size": 512}) is None
  expected = 1 if jax.default_backend() == "cpu" else None
  assert sweep.auto_members_per_step({"memory_size": 256}) == expected


def test_sweep_optimizer_matches_the_plain_optimizer():
  """Traced hyper-parameters give the update of make_optimizer's chain."""
  task, model = _setup("xla")
  config = OptimizerConfig(**dict(SETTINGS["optimizer"], momentum=0.5))
  batch = task.sample(np.random.default_rng(0), 4)
  params = jax.jit(model.init)(jax.random.PRNGKey(0), batch.inputs)
  results = []
  for optimizer in (make_optimizer(config),
                    sweep.sweep_optimizer(config)(config)):
    step = jax.jit(make_train_step(model.apply, task, optimizer))
    state = TrainState(params, optimizer.init(params))
    for _ in range(3):
      state, _ = step(state, batch)
    results.append(_flat(state.params))
  np.testing.assert_allclose(results[0], results[1], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("items, message", [
    (["memory_size=8,16"], "only learning_rate"),
    (["name=1,2"], "only learning_rate"),
    (["learning_rate"], "FIELD=V1,V2"),
    (["learning_rate=a,b"], "must be numbers"),
    (["momentum=0,0.9"], "zero and non-zero momentum"),
])
def test_bad_sweeps_are_refused(items, message):
  with pytest.raises(ValueError, match=message):
    sweep.parse_sweep(items)


@pytest.mark.parametrize("argv, message", [
    (["--task", "copy", "--sweep", "memory_size=8,16"],
     "memory_size: only learning_rate"),
    (["--task", "shrdlu", "--seeds", "2"],
     "task 'shrdlu' is not supported"),
    (["--task", "copy", "--mesh-model", "2"], "applies to sweeps"),
])
def test_cli_refuses_what_a_sweep_cannot_do(argv, message, tmp_path, capsys):
  with pytest.raises(SystemExit):
    cli.main(argv + ["--out", str(tmp_path / "r")])
  assert message in capsys.readouterr().err
  assert not (tmp_path / "r").exists()


def test_seeds():
  assert sweep.parse_seeds("3", 5) == [5, 6, 7]
  assert sweep.parse_seeds("0,4") == [0, 4]
  with pytest.raises(ValueError, match="none repeated"):
    sweep.parse_seeds("1,1")


def _run(out, steps, stop=None, evaluate=True):
  settings = json.loads(json.dumps(SETTINGS))
  settings["loop"]["steps"] = steps
  return sweep.run_bit_sweep(settings, "copy", out, sweep_worker.SPEC,
                             resume=True, progress=False, stop_after=stop,
                             evaluate=evaluate)


def _checkpoint(out):
  task, model = _setup()
  members = sweep.make_members(OptimizerConfig(**SETTINGS["optimizer"]),
                               sweep_worker.SPEC["seeds"],
                               sweep_worker.SPEC["sweep"])
  template = jax.device_put(sweep.initial_members(  # On this one device.
      model.init, members, task.sample(np.random.default_rng(0), 4).inputs))
  checkpointer = Checkpointer(pathlib.Path(out) / "checkpoints",
                              create=False)
  state, record = checkpointer.restore(template)
  checkpointer.close()
  return jax.device_get(state), record


def test_interrupted_sweep_resumes_bitwise(tmp_path):
  whole = _run(tmp_path / "whole", 4)
  assert whole["step"] == 4 and len(whole["members"]) == 4
  assert set(whole["eval"]["valid/bit_errors"]) == {"mean", "sd", "n"}
  first = _run(tmp_path / "cut", 4, stop=1)  # Checkpoint at step 1.
  assert first["stopped"] == "stop_after"
  _run(tmp_path / "cut", 4)
  a, record = _checkpoint(tmp_path / "whole")
  b, _ = _checkpoint(tmp_path / "cut")
  assert record["step"] == 4
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(x, y)
  lines = [json.loads(l) for l in
           (tmp_path / "whole" / "metrics.jsonl").read_text().splitlines()]
  assert {l["member"] for l in lines if l["kind"] == "train"} == {0, 1, 2, 3}
  out = subprocess.run(
      [sys.executable, "-m", "experiments.sweep", "--run",
       str(tmp_path / "whole")], capture_output=True, text=True, cwd=ROOT,
      env=dict(os.environ, PYTHONPATH=str(ROOT)), timeout=120, check=True)
  assert "[learning_rate=0.01] seeds [0, 1]" in out.stdout
  assert "valid/bit_errors:" in out.stdout and "±" in out.stdout


@pytest.mark.slow
def test_plot_draws_a_sweep_member(tmp_path, capsys):
  """dnc-plot --member M draws member M of a sweep's one checkpoint."""
  from experiments import plot
  _run(tmp_path / "run", 1, evaluate=False)
  _, _, zero = plot.load_run(tmp_path / "run")
  _, _, two = plot.load_run(tmp_path / "run", member=2)
  assert not np.allclose(_flat(zero), _flat(two))
  state, _ = _checkpoint(tmp_path / "run")
  np.testing.assert_array_equal(
      _flat(two), _flat(jax.tree.map(lambda x: x[2], state.params)))
  assert plot.main(["--run", str(tmp_path / "run"), "--member", "2"]) == 0
  assert (tmp_path / "run" / "memory-trained-0-member2.png").is_file()
  with pytest.raises(SystemExit):
    plot.main(["--run", str(tmp_path / "run"), "--member", "4"])
  assert "the sweep in" in capsys.readouterr().err


def _env(**extra):
  # The run's compilation cache (conftest.py) comes with os.environ.
  env = dict(os.environ, PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu",
             JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
             JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0", **extra)
  for key in ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES",
              "JAX_PROCESS_ID"):
    env.pop(key, None)
  return env


def test_sharded_steps_equal_the_single_device_step(tmp_path):
  """4 forced host devices: meshes 2x2, 1x4 (batch split) and 4x1 give the
  1x1 step's values."""
  out = tmp_path / "mesh.npz"
  subprocess.run([sys.executable, str(WORKER), "mesh", str(out)], cwd=ROOT,
                 env=_env(XLA_FLAGS="--xla_force_host_platform_device_count=4"),
                 timeout=240, check=True)
  results = np.load(out)
  for name in ("2x2", "1x4", "4x1"):
    np.testing.assert_allclose(results[name], results["1x1"], rtol=1e-5,
                               atol=1e-6, err_msg=name)
    np.testing.assert_allclose(results[name + "_loss"],
                               results["1x1_loss"], rtol=1e-5)
  assert not np.allclose(results["1x1"][0], results["1x1"][1])


def _free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _two_processes(out, steps, stop):
  port = _free_port()
  procs = [subprocess.Popen(
      [sys.executable, str(WORKER), "train", str(out), str(steps),
       str(stop), f"127.0.0.1:{port}", "2", str(i)], cwd=ROOT, env=_env(),
      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
           for i in range(2)]
  try:
    logs = [p.communicate(timeout=120)[0] for p in procs]
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
        p.wait()
  for p, log in zip(procs, logs):
    assert p.returncode == 0, log[-3000:]
  return logs


@pytest.mark.slow
def test_two_processes_train_as_one(tmp_path):
  """Two localhost processes (gloo), each feeding half of every batch,
  stop at step 2, resume to 4: the parameters of one process's run."""
  _run(tmp_path / "one", 4, evaluate=False)  # One process, here.
  _two_processes(tmp_path / "two", 4, 2)
  _, record = _checkpoint(tmp_path / "two")
  assert record["step"] == 2
  logs = _two_processes(tmp_path / "two", 4, 0)
  assert "resumed the 4-member sweep from step 2" in logs[0]
  a, _ = _checkpoint(tmp_path / "one")
  b, record = _checkpoint(tmp_path / "two")
  assert record["step"] == 4
  np.testing.assert_allclose(_flat(b.params), _flat(a.params), rtol=1e-6,
                             atol=1e-7)
  summary = json.loads((tmp_path / "two" / "summary.json").read_text())
  assert summary["processes"] == 2 and summary["mesh"] == {"model": 1,
                                                           "data": 2}


def test_partial_scale_out_settings_are_refused(monkeypatch):
  for key in ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES",
              "JAX_PROCESS_ID"):
    monkeypatch.delenv(key, raising=False)
  assert not distributed.initialize()
  with pytest.raises(ValueError, match="missing --coordinator-address, "
                     "--process-id"):
    distributed.initialize(num_processes=2)
  with pytest.raises(ValueError, match=r"--process-id must be in \[0, 2\)"):
    distributed.initialize("127.0.0.1:1", 2, 2)
  count = len(jax.devices())
  with pytest.raises(ValueError, match="must divide"):
    distributed.make_mesh(2, 4, count + 1)
