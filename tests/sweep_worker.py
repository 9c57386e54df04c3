"""Subprocess side of tests/test_sweep.py (not a test module).

``python tests/sweep_worker.py mesh OUT``: with forced host devices, runs
one sweep step on several meshes and saves the results.
``python tests/sweep_worker.py train OUT STEPS STOP [COORD NPROC PID]``:
trains the small sweep (multi-process when COORD is given; STOP 0: none)
and saves the final state (process 0).
"""

import sys

import jax
import numpy as np

from experiments import distributed, sweep
from experiments.tasks import bit

SETTINGS = {
    "task": dict(num_bits=4, min_length=1, max_length=3),
    "model": dict(hidden_size=8, memory_size=4, word_size=4, num_reads=1,
                  num_writes=1, memory_backend="auto"),
    "optimizer": dict(name="rmsprop", learning_rate=1e-3, max_grad_norm=50.0,
                      decay=0.9, epsilon=1e-10, momentum=0.0),
    "loop": dict(steps=4, batch_size=4, seed=0, log_every=1, eval_every=0,
                 checkpoint_every=2),
    "eval_batch_size": 4,
}
SPEC = {"seeds": [0, 1], "sweep": {"learning_rate": [1e-3, 1e-2]}}


def mesh_main(out):
  from dnc_jax import DNCConfig
  from experiments.loop import OptimizerConfig
  from experiments.models import unrolled_dnc
  task = bit.TASKS["copy"](**SETTINGS["task"])
  config = DNCConfig(output_size=task.output_size, input_size=task.input_size,
                     **SETTINGS["model"])
  model = unrolled_dnc(config)
  members = sweep.make_members(OptimizerConfig(**SETTINGS["optimizer"]),
                               [0, 1], {"learning_rate": [1e-3, 1e-2]})
  results = {}
  for model_devices, data_devices in ((1, 1), (2, 2), (1, 4), (4, 1)):
    devices = np.array(jax.devices()[:model_devices * data_devices])
    mesh = jax.sharding.Mesh(devices.reshape(model_devices, data_devices),
                             ("model", "data"))
    if len(members) % model_devices:
      members_here = members * (model_devices // len(members))
    else:
      members_here = members
    sample = sweep.MemberSampler(task, members_here, 4, mesh)
    state = sweep.place_state(sweep.initial_members(
        model.init, members_here, np.asarray(sample.one(0, 0).inputs)), mesh)
    step = sweep.make_sweep_step(model.apply, task, members[0].optimizer,
                                 mesh)
    for s in range(2):
      state, metrics = step(state, sample(s))
    leaves = jax.tree.leaves(sweep.host(state.params))
    results[f"{model_devices}x{data_devices}"] = np.concatenate(
        [x[:2].reshape(2, -1) for x in leaves], axis=1)
    results[f"{model_devices}x{data_devices}_loss"] = np.asarray(
        sweep.host(metrics)["loss"])[:2]
  np.savez(out, **results)


def train_main(out, steps, stop, coordinator=None, count=None, index=None):
  if coordinator:
    distributed.initialize(coordinator, int(count), int(index))
  settings = dict(SETTINGS, loop=dict(SETTINGS["loop"], steps=int(steps)))
  summary = sweep.run_bit_sweep(
      settings, "copy", out, SPEC, resume=True, progress=False,
      stop_after=int(stop) or None, model_devices=1, evaluate=False)
  print(f"process {jax.process_index()} done at step {summary['step']}",
        flush=True)


if __name__ == "__main__":
  if sys.argv[1] == "mesh":
    mesh_main(sys.argv[2])
  else:
    train_main(*sys.argv[2:])
