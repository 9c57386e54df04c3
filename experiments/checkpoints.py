"""Checkpoints of a training run, written with orbax.

A checkpoint holds the training state (a pytree of arrays: parameters,
optimiser state, ...) and a JSON record (the step, the run's configuration).
Orbax writes each one into a temporary folder and renames it when complete, so
a run killed mid-save leaves the previous checkpoint intact.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import pathlib
import signal
from typing import Any, Dict, Optional, Tuple

import jax
import orbax.checkpoint as ocp

from dnc_jax import DNCConfig


class CheckpointError(RuntimeError):
  """A checkpoint is missing, unreadable or belongs to another run."""


@contextlib.contextmanager
def _silent_orbax():
  """Orbax logs an unreadable checkpoint at ERROR with the whole file; the
  caller says it in one line instead."""
  logger = logging.getLogger("absl")
  level = logger.level
  logger.setLevel(logging.CRITICAL)
  try:
    yield
  finally:
    logger.setLevel(level)


def _quiet_orbax():
  # Orbax logs every save at INFO through absl; training prints its own lines.
  logging.getLogger("absl").setLevel(logging.WARNING)


# Settings added to the run record after runs had already been saved, each
# with the value that reproduces what those runs did: a saved record that
# lacks one of them matches a current record holding exactly that value, so
# a run from before the setting existed resumes, and one that turns it on
# does not. (The later DNC fixes, all off by default, came after the long
# bAbI run had started.)
_LATER_DNC_FIELDS = ("content_masking", "deallocation", "link_sharpness",
                     "controller_layer_norm", "interface_layer_norm",
                     "bypass_dropout")
ADDED_SETTINGS: Dict[str, Any] = {
    f"model.{field.name}": field.default
    for field in dataclasses.fields(DNCConfig)
    if field.name in _LATER_DNC_FIELDS}
_ABSENT = "<absent>"


def describe_differences(saved: Dict[str, Any], current: Dict[str, Any],
                         prefix: str = "",
                         added: Optional[Dict[str, Any]] = None) -> list:
  """``["model.memory_size: saved 16, now 32", ...]`` for two nested dicts.

  ``added`` (default :data:`ADDED_SETTINGS`): dotted keys that ``saved``
  may lack when ``current`` holds the listed value.
  """
  added = ADDED_SETTINGS if added is None else added
  differences = []
  for key in sorted(set(saved) | set(current)):
    a, b = saved.get(key, _ABSENT), current.get(key, _ABSENT)
    if isinstance(a, dict) and isinstance(b, dict):
      differences += describe_differences(a, b, f"{prefix}{key}.", added)
    elif a is _ABSENT and f"{prefix}{key}" in added and _same(
        b, added[f"{prefix}{key}"]):
      continue
    elif a != b:
      differences.append(f"{prefix}{key}: saved {a!r}, now {b!r}")
  return differences


def _same(value: Any, expected: Any) -> bool:
  # False == 0 in Python; a setting's type is part of its value here.
  return type(value) is type(expected) and value == expected


def _brief(error: Exception, limit: int = 160) -> str:
  """An exception as one short line: TensorStore errors run to pages."""
  text = " ".join(str(error).split())
  if len(text) > limit:
    text = text[:limit] + " ..."
  return f"{type(error).__name__}: {text}"


@contextlib.contextmanager
def _test_hook_inside_save(step: int):
  """Test hook: ``DNC_TEST_KILL_IN_SAVE=n`` kills the process (SIGKILL)
  while the checkpoint of step ``n`` is written, its files complete but
  not yet renamed into place: the window a power cut can hit."""
  if os.environ.get("DNC_TEST_KILL_IN_SAVE") != str(step):
    yield
    return
  from orbax.checkpoint._src.path import atomicity  # Test only.

  async def kill(*args, **kwargs):
    del args, kwargs
    os.kill(os.getpid(), signal.SIGKILL)

  original = atomicity.async_path.rename
  atomicity.async_path.rename = kill
  try:
    yield
  finally:
    atomicity.async_path.rename = original


class Checkpointer:
  """Saves and restores ``(state, record)`` pairs under ``directory/<step>``.

  Args:
    directory: folder of the run's checkpoints (created if absent).
    max_to_keep: how many recent checkpoints to keep.
  """

  def __init__(self, directory, max_to_keep: int = 2, create: bool = True):
    _quiet_orbax()
    self.directory = pathlib.Path(directory).absolute()
    if not create and not self.directory.is_dir():
      raise CheckpointError(f"no checkpoint folder {self.directory}")
    self._manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep, create=create,
            enable_async_checkpointing=False))

  def latest_step(self) -> Optional[int]:
    return self._manager.latest_step()

  def all_steps(self) -> list:
    """The steps of the complete checkpoints, oldest first."""
    return sorted(self._manager.all_steps())

  def save(self, step: int, state: Any, record: Dict[str, Any]):
    """Writes the checkpoint of ``step`` (replacing one of the same step)."""
    if step in self._manager.all_steps():
      self._manager.delete(step)
    try:
      with _test_hook_inside_save(step):
        self._manager.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(state),
            record=ocp.args.JsonSave(dict(record, step=step))), force=True)
        self._manager.wait_until_finished()
    except OSError as error:
      raise CheckpointError(
          f"writing the checkpoint of step {step} into {self.directory} "
          f"failed ({error.strerror or error}); the previous checkpoints "
          f"{self.all_steps()} are intact") from None

  def read_record(self, step: Optional[int] = None) -> Dict[str, Any]:
    """The JSON record of ``step`` (default: the latest)."""
    step = self._resolve(step)
    try:
      with _silent_orbax():
        return self._manager.restore(step, args=ocp.args.Composite(
            record=ocp.args.JsonRestore()))["record"]
    except Exception as error:  # orbax raises many types for a bad folder.
      raise CheckpointError(
          f"the checkpoint {self.directory / str(step)} could not be read "
          f"({_brief(error)}); it may be corrupt") from None

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
      with _silent_orbax():
        restored = self._manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract)))["state"]
    except Exception as error:
      raise CheckpointError(
          f"the checkpoint {self.directory / str(step)} does not match this "
          f"run's model and optimiser, or is corrupt "
          f"({_brief(error)})") from None
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
