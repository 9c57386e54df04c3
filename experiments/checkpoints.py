"""Checkpoints of a training run, written with orbax.

A checkpoint holds the training state (a pytree of arrays: parameters,
optimiser state, ...) and a JSON record (the step, the run's configuration).
Orbax writes each one into a temporary folder and renames it when complete, so
a run killed mid-save leaves the previous checkpoint intact.
"""

from __future__ import annotations

import logging
import pathlib
from typing import Any, Dict, Optional, Tuple

import jax
import orbax.checkpoint as ocp


class CheckpointError(RuntimeError):
  """A checkpoint is missing, unreadable or belongs to another run."""


def _quiet_orbax():
  # Orbax logs every save at INFO through absl; training prints its own lines.
  logging.getLogger("absl").setLevel(logging.WARNING)


def describe_differences(saved: Dict[str, Any], current: Dict[str, Any],
                         prefix: str = "") -> list:
  """``["model.memory_size: saved 16, now 32", ...]`` for two nested dicts."""
  differences = []
  for key in sorted(set(saved) | set(current)):
    a, b = saved.get(key, "<absent>"), current.get(key, "<absent>")
    if isinstance(a, dict) and isinstance(b, dict):
      differences += describe_differences(a, b, f"{prefix}{key}.")
    elif a != b:
      differences.append(f"{prefix}{key}: saved {a!r}, now {b!r}")
  return differences


class Checkpointer:
  """Saves and restores ``(state, record)`` pairs under ``directory/<step>``.

  Args:
    directory: folder of the run's checkpoints (created if absent).
    max_to_keep: how many recent checkpoints to keep.
  """

  def __init__(self, directory, max_to_keep: int = 2):
    _quiet_orbax()
    self.directory = pathlib.Path(directory).absolute()
    self._manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep, create=True,
            enable_async_checkpointing=False))

  def latest_step(self) -> Optional[int]:
    return self._manager.latest_step()

  def save(self, step: int, state: Any, record: Dict[str, Any]):
    """Writes the checkpoint of ``step`` (replacing one of the same step)."""
    if step in self._manager.all_steps():
      self._manager.delete(step)
    self._manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state),
        record=ocp.args.JsonSave(dict(record, step=step))), force=True)
    self._manager.wait_until_finished()

  def read_record(self, step: Optional[int] = None) -> Dict[str, Any]:
    """The JSON record of ``step`` (default: the latest)."""
    step = self._resolve(step)
    try:
      return self._manager.restore(step, args=ocp.args.Composite(
          record=ocp.args.JsonRestore()))["record"]
    except Exception as error:  # orbax raises many types for a bad folder.
      raise CheckpointError(
          f"the checkpoint {self.directory / str(step)} could not be read "
          f"({type(error).__name__}: {error}); it may be corrupt") from error

  def restore(self, template: Any, step: Optional[int] = None
              ) -> Tuple[Any, Dict[str, Any]]:
    """The state of ``step`` (default: the latest), shaped like ``template``.

    Raises:
      CheckpointError: no checkpoint, an unreadable one, or one whose arrays
        do not match ``template`` (another model or optimiser).
    """
    step = self._resolve(step)
    record = self.read_record(step)
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, template)
    try:
      restored = self._manager.restore(step, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(abstract)))["state"]
    except Exception as error:
      raise CheckpointError(
          f"the checkpoint {self.directory / str(step)} does not match this "
          f"run's model and optimiser, or is corrupt "
          f"({type(error).__name__}: {error})") from error
    leaves = jax.tree.leaves(restored)
    treedef = jax.tree.structure(template)
    if len(leaves) != treedef.num_leaves:
      raise CheckpointError(
          f"the checkpoint {self.directory / str(step)} holds {len(leaves)} "
          f"arrays, this run's state {treedef.num_leaves}")
    return jax.tree.unflatten(treedef, leaves), record

  def _resolve(self, step: Optional[int]) -> int:
    steps = self._manager.all_steps()
    if step is None:
      if not steps:
        raise CheckpointError(f"no checkpoint in {self.directory}")
      return max(steps)
    if step not in steps:
      raise CheckpointError(f"no checkpoint of step {step} in "
                            f"{self.directory} (it has {sorted(steps)})")
    return step

  def close(self):
    self._manager.close()
