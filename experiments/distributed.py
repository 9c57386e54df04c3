"""Multi-process (multi-host) start-up and the device mesh of a run.

Every process runs the same program. :func:`initialize` joins them with
``jax.distributed.initialize`` from the flags ``--coordinator-address``,
``--num-processes`` and ``--process-id``, or else the environment
variables ``JAX_COORDINATOR_ADDRESS``, ``JAX_NUM_PROCESSES`` and
``JAX_PROCESS_ID``; with neither it does nothing (one process). On the
CPU the processes talk through gloo. See ``docs/scaling.md``.

:func:`make_mesh` lays all devices (of every process) out as a
``("model", "data")`` mesh: sweep members along ``model``, each member's
batch along ``data``.
"""

from __future__ import annotations

import argparse
import os
from typing import Optional

import jax
import numpy as np
from jax.sharding import Mesh

_ENV = {"coordinator_address": "JAX_COORDINATOR_ADDRESS",
        "num_processes": "JAX_NUM_PROCESSES",
        "process_id": "JAX_PROCESS_ID"}


def add_flags(parser: argparse.ArgumentParser):
  """``--coordinator-address``, ``--num-processes``, ``--process-id``,
  ``--mesh-model``."""
  group = parser.add_argument_group("scale-out (docs/scaling.md)")
  group.add_argument("--coordinator-address", default=None,
                     help="HOST:PORT of process 0 (multi-host; else "
                     "$JAX_COORDINATOR_ADDRESS)")
  group.add_argument("--num-processes", type=int, default=None,
                     help="processes in the run (else $JAX_NUM_PROCESSES)")
  group.add_argument("--process-id", type=int, default=None,
                     help="this process, 0 .. num-processes - 1 (else "
                     "$JAX_PROCESS_ID)")
  group.add_argument("--mesh-model", type=int, default=None,
                     help="devices along the mesh's model (sweep member) "
                     "axis; the rest split each batch (default: all "
                     "devices if they divide the members, else 1)")


def initialize(coordinator_address: Optional[str] = None,
               num_processes: Optional[int] = None,
               process_id: Optional[int] = None) -> bool:
  """Joins the other processes; ``False`` (and nothing done) if single.

  Arguments left ``None`` come from the environment variables.

  Raises:
    ValueError: some but not all of the three are given, or out of range.
  """
  values = {"coordinator_address": coordinator_address,
            "num_processes": num_processes, "process_id": process_id}
  for name, env in _ENV.items():
    if values[name] is None and os.environ.get(env):
      values[name] = os.environ[env]
  given = [name for name, value in values.items() if value is not None]
  if not given:
    return False
  if len(given) != 3:
    missing = sorted(set(values) - set(given))
    raise ValueError("multi-process runs need --coordinator-address, "
                     "--num-processes and --process-id; missing "
                     + ", ".join("--" + m.replace("_", "-") for m in missing))
  count, index = int(values["num_processes"]), int(values["process_id"])
  if count < 1 or not 0 <= index < count:
    raise ValueError(f"--process-id must be in [0, {count}), got {index}")
  if jax.config.jax_platforms in (None, "", "cpu") or (
      jax.config.jax_platforms or "").startswith("cpu"):
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(coordinator_address=values["coordinator_address"],
                             num_processes=count, process_id=index)
  return True


def make_mesh(members: int, batch_size: int,
              model_devices: Optional[int] = None) -> Mesh:
  """A ``("model", "data")`` mesh over all devices of all processes.

  Args:
    members: sweep members (the leading axis of the state).
    batch_size: examples per member and step.
    model_devices: devices along ``model``; default all devices when
      they divide ``members``, else 1.

  Raises:
    ValueError: the members or the batch do not split evenly.
  """
  devices = jax.devices()
  count = len(devices)
  if model_devices is None:
    model_devices = count if members % count == 0 else 1
  if model_devices < 1 or count % model_devices:
    raise ValueError(f"--mesh-model {model_devices} must divide the "
                     f"{count} devices")
  if members % model_devices:
    raise ValueError(f"{members} sweep members do not split over "
                     f"--mesh-model {model_devices} devices")
  data_devices = count // model_devices
  if batch_size % data_devices:
    raise ValueError(f"batch_size {batch_size} must split evenly over the "
                     f"{data_devices} devices of the mesh's data axis")
  return Mesh(np.array(devices).reshape(model_devices, data_devices),
              ("model", "data"))
