"""The bit-sequence tasks: copy, repeat copy and dynamic-allocation copy.

Each task draws batches of random binary patterns with NumPy, padded to the
task's static maximum length so a jit-compiled step compiles once; ``mask``
marks the time steps whose targets count. Arrays are time-major:
``inputs [T, B, X]``, ``targets [T, B, Y]``, ``mask [T, B]``.
"""

from __future__ import annotations

import dataclasses
from typing import Dict, NamedTuple

import copy
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from experiments.tasks.base import TaskBase


class Batch(NamedTuple):
  """A padded, time-major batch.

  Attributes:
    inputs: ``[T, B, X]`` float32.
    targets: ``[T, B, Y]`` float32 (bits, 0 or 1).
    mask: ``[T, B]`` float32, 1 where the target counts.
  """

  inputs: np.ndarray
  targets: np.ndarray
  mask: np.ndarray


def _check_range(name: str, low: int, high: int, minimum: int = 1):
  for value in (low, high):
    if isinstance(value, bool) or not isinstance(value, int):
      raise ValueError(f"{name} bounds must be ints, got {low!r}, {high!r}")
  if not minimum <= low <= high:
    raise ValueError(f"{name} must satisfy {minimum} <= min <= max, "
                     f"got min={low}, max={high}")


def _empty_batch(time: int, batch_size: int, input_size: int,
                 output_size: int) -> Batch:
  return Batch(np.zeros((time, batch_size, input_size), np.float32),
               np.zeros((time, batch_size, output_size), np.float32),
               np.zeros((time, batch_size), np.float32))


class BitTask(TaskBase):
  """Shared interface of the bit tasks (see :class:`Copy` for one)."""

  name: ClassVar[str] = "bit"
  input_size: int
  output_size: int

  @property
  def max_time(self) -> int:
    """Static length every batch is padded to."""
    raise NotImplementedError

  def sample(self, rng: np.random.Generator, batch_size: int) -> Batch:
    raise NotImplementedError

  def longer(self) -> "BitTask":
    """A variant with longer sequences than trained on, for evaluation."""
    raise NotImplementedError

  def loss(self, logits: jax.Array, batch: Batch) -> jax.Array:
    return sigmoid_cross_entropy(logits, batch)

  def metrics(self, logits: jax.Array, batch: Batch) -> Dict[str, jax.Array]:
    return bit_metrics(logits, batch)


class _ShowThenCopy(BitTask):
  """Tasks whose inputs are patterns, each closed by a delimiter flag."""

  num_bits: int

  @property
  def input_size(self) -> int:
    return self.num_bits + 1

  @property
  def output_size(self) -> int:
    return self.num_bits


def _show_then_copy(batch: Batch, b: int, start: int,
                    pattern: np.ndarray) -> int:
  """Shows ``pattern`` from step ``start``, a delimiter, then asks for it.

  Returns the step after the copy.
  """
  length, bits = pattern.shape
  batch.inputs[start:start + length, b, :bits] = pattern
  batch.inputs[start + length, b, bits] = 1.0
  copy = slice(start + length + 1, start + 2 * length + 1)
  batch.targets[copy, b] = pattern
  batch.mask[copy, b] = 1.0
  return start + 2 * length + 1


@dataclasses.dataclass(frozen=True)
class Copy(_ShowThenCopy):
  """Copy (Extended Data Fig. 4): show a pattern, then reproduce it.

  Inputs have ``num_bits + 1`` channels: the pattern's bits and a delimiter
  flag raised on the step after the pattern. Targets are the pattern, due
  on the ``length`` steps after the delimiter.
  """

  name: ClassVar[str] = "copy"
  num_bits: int = 6
  min_length: int = 1
  max_length: int = 100

  def __post_init__(self):
    _check_range("num_bits", self.num_bits, self.num_bits)
    _check_range("length", self.min_length, self.max_length)

  @property
  def max_time(self) -> int:
    return 2 * self.max_length + 1

  def sample(self, rng, batch_size):
    batch = _empty_batch(self.max_time, batch_size, self.input_size,
                         self.output_size)
    lengths = rng.integers(self.min_length, self.max_length + 1, batch_size)
    for b, length in enumerate(lengths):
      pattern = rng.integers(0, 2, (length, self.num_bits)).astype(np.float32)
      _show_then_copy(batch, b, 0, pattern)
    return batch

  def longer(self):
    return dataclasses.replace(self, min_length=self.max_length + 1,
                               max_length=2 * self.max_length)


@dataclasses.dataclass(frozen=True)
class RepeatCopy(BitTask):
  """Repeat copy, as in the original release's demo task.

  Inputs have ``num_bits + 2`` channels: bits, a start flag and a repeat
  channel. Step 0 raises the start flag, the pattern follows, then one step
  gives the number of repeats (divided by ``repeat_norm``) on the repeat
  channel. Targets have ``num_bits + 1`` channels: the pattern repeated, then
  an end flag. The mask covers the repeats and the end flag.
  """

  name: ClassVar[str] = "repeat_copy"
  num_bits: int = 4
  min_length: int = 1
  max_length: int = 2
  min_repeats: int = 1
  max_repeats: int = 2
  repeat_norm: float = 10.0

  def __post_init__(self):
    _check_range("num_bits", self.num_bits, self.num_bits)
    _check_range("length", self.min_length, self.max_length)
    _check_range("repeats", self.min_repeats, self.max_repeats)
    if not self.repeat_norm > 0:
      raise ValueError(f"repeat_norm must be > 0, got {self.repeat_norm}")

  @property
  def input_size(self) -> int:
    return self.num_bits + 2

  @property
  def output_size(self) -> int:
    return self.num_bits + 1

  @property
  def max_time(self) -> int:
    return self.max_length * (self.max_repeats + 1) + 3

  def sample(self, rng, batch_size):
    bits = self.num_bits
    batch = _empty_batch(self.max_time, batch_size, self.input_size,
                         self.output_size)
    lengths = rng.integers(self.min_length, self.max_length + 1, batch_size)
    repeats = rng.integers(self.min_repeats, self.max_repeats + 1, batch_size)
    for b, (length, times) in enumerate(zip(lengths, repeats)):
      pattern = rng.integers(0, 2, (length, bits)).astype(np.float32)
      batch.inputs[0, b, bits] = 1.0
      batch.inputs[1:length + 1, b, :bits] = pattern
      batch.inputs[length + 1, b, bits + 1] = times / self.repeat_norm
      start, end = length + 2, length + 2 + length * times
      batch.targets[start:end, b, :bits] = np.tile(pattern, (times, 1))
      batch.targets[end, b, bits] = 1.0
      batch.mask[start:end + 1, b] = 1.0
    return batch

  def longer(self):
    return dataclasses.replace(self, min_length=self.max_length + 1,
                               max_length=2 * self.max_length)


@dataclasses.dataclass(frozen=True)
class DynamicAllocationCopy(_ShowThenCopy):
  """Dynamic-allocation copy (Extended Data Fig. 1).

  ``num_sequences`` patterns are shown one after another, each copied back
  right after it is shown (pattern, delimiter, copy). With fewer memory slots
  than vectors in all the patterns, the network must free and re-use slots.
  Inputs: ``num_bits + 1`` channels (bits and the delimiter flag).
  """

  name: ClassVar[str] = "dynamic_allocation_copy"
  num_bits: int = 6
  num_sequences: int = 10
  min_length: int = 5
  max_length: int = 5

  def __post_init__(self):
    _check_range("num_bits", self.num_bits, self.num_bits)
    _check_range("num_sequences", self.num_sequences, self.num_sequences)
    _check_range("length", self.min_length, self.max_length)

  @property
  def max_time(self) -> int:
    return self.num_sequences * (2 * self.max_length + 1)

  def sample(self, rng, batch_size):
    batch = _empty_batch(self.max_time, batch_size, self.input_size,
                         self.output_size)
    for b in range(batch_size):
      t = 0
      for length in rng.integers(self.min_length, self.max_length + 1,
                                 self.num_sequences):
        pattern = rng.integers(0, 2, (length, self.num_bits)).astype(
            np.float32)
        t = _show_then_copy(batch, b, t, pattern)
    return batch

  def longer(self):
    return dataclasses.replace(self, num_sequences=2 * self.num_sequences)


def sigmoid_cross_entropy(logits: jax.Array, batch: Batch) -> jax.Array:
  """Sigmoid cross-entropy summed over bits and masked steps, mean over batch.

  Args:
    logits: ``[T, B, Y]``.
    batch: the :class:`Batch` the logits answer.
  Returns:
    A scalar.
  """
  targets = batch.targets
  per_bit = (jnp.maximum(logits, 0.0) - logits * targets
             + jnp.log1p(jnp.exp(-jnp.abs(logits))))
  per_step = jnp.sum(per_bit, axis=-1) * batch.mask
  return jnp.sum(per_step) / logits.shape[1]


def bit_metrics(logits: jax.Array, batch: Batch) -> Dict[str, jax.Array]:
  """Bit errors per sequence and the fraction of sequences copied perfectly.

  A bit is predicted 1 where its logit is positive; only masked steps count.
  """
  wrong = ((logits > 0) != (batch.targets > 0.5)).astype(jnp.float32)
  errors = jnp.sum(jnp.sum(wrong, axis=-1) * batch.mask, axis=0)
  return {"bit_errors": jnp.mean(errors),
          "perfect": jnp.mean((errors == 0).astype(jnp.float32))}


TASKS = {
    "copy": Copy,
    "repeat_copy": RepeatCopy,
    "dynamic_allocation_copy": DynamicAllocationCopy,
}


# Presets: plain data, one dict of sections (task, model, optimizer, loop)
# per name. ``original`` reproduces the original release's repeat-copy demo
# exactly; the ``default`` presets are tuned to train on a 2-core CPU in
# minutes; ``paper`` presets use the paper's sizes (GPU scale).
# The original release's train.py flags (deepmind/dnc): LSTM 64, memory
# 16 x 16, 4 read heads, 1 write head, clip 20, softplus strengths, TF1
# RMSProp lr 1e-4 eps 1e-10 after global-norm clipping at 50, batch 16.
_ORIGINAL_REPEAT_COPY = {
    "task": {},
    "model": dict(controller="lstm", hidden_size=64, memory_size=16,
                  word_size=16, num_reads=4, num_writes=1, clip_value=20.0,
                  strength_squash="softplus"),
    "optimizer": dict(name="rmsprop", learning_rate=1e-4, max_grad_norm=50.0,
                      decay=0.9, epsilon=1e-10),
    "loop": dict(steps=100_000, batch_size=16, log_every=100,
                 eval_every=1000, checkpoint_every=1000),
}


def _with(base: Dict[str, Any], **sections) -> Dict[str, Any]:
  preset = copy.deepcopy(base)
  for section, changes in sections.items():
    preset[section].update(changes)
  return preset


# Extended Data Fig. 4: feed-forward controller, link dense / K = 5 / none.
_COPY_PAPER = {
    "task": dict(num_bits=6, min_length=1, max_length=100),
    "model": dict(controller="feedforward", hidden_size=256, num_layers=1,
                  memory_size=128, word_size=16, num_reads=1, num_writes=1,
                  clip_value=20.0),
    "optimizer": dict(name="rmsprop", learning_rate=1e-4, max_grad_norm=50.0,
                      decay=0.9, epsilon=1e-10),
    "loop": dict(steps=200_000, batch_size=16, log_every=100,
                 eval_every=1000, checkpoint_every=1000),
}
_COPY_CPU = _with(_COPY_PAPER,
                  task=dict(max_length=20),
                  model=dict(memory_size=32, hidden_size=128),
                  optimizer=dict(name="adam", learning_rate=1e-3,
                                 epsilon=1e-8),
                  loop=dict(steps=20_000, eval_every=500,
                            checkpoint_every=500))
_LINKS = {"dense": dict(link_sparsity=None, use_temporal_links=True),
          "sparse": dict(link_sparsity=5, use_temporal_links=True),
          "nolink": dict(use_temporal_links=False)}

# Extended Data Fig. 1: 10 sequences, 10 memory slots, feed-forward controller.
_DYNAMIC_ALLOCATION = {
    "task": dict(num_bits=6, num_sequences=10, min_length=5, max_length=5),
    "model": dict(controller="feedforward", hidden_size=128, num_layers=1,
                  memory_size=10, word_size=16, num_reads=1, num_writes=1,
                  clip_value=20.0),
    "optimizer": dict(name="adam", learning_rate=1e-3, max_grad_norm=50.0,
                      epsilon=1e-8),
    "loop": dict(steps=30_000, batch_size=16, log_every=100, eval_every=500,
                 checkpoint_every=500),
}

# The NTM beside the DNC (Extended Data Table 1's baseline; docs/ntm.md):
# ``kind: "ntm"`` and the DNC preset's controller, sizes, clipping, optimiser
# and loop, so the two differ only in the memory; shifts -1..+1 (the 2014
# paper's) and one-hot initial weightings. DNC-only fields (links,
# allocation, ...) are dropped; the NTM has one controller layer.
_NTM_FIELDS = ("controller", "hidden_size", "memory_size", "word_size",
               "num_reads", "num_writes", "clip_value")


def _as_ntm(base: Dict[str, Any], **model) -> Dict[str, Any]:
  preset = copy.deepcopy(base)
  if preset["model"].get("num_layers", 1) != 1:
    raise ValueError("the NTM has one controller layer")
  preset["kind"] = "ntm"
  preset["model"] = dict({k: v for k, v in preset["model"].items()
                          if k in _NTM_FIELDS},
                         shift_range=1, initial_weighting="one_hot",
                         weighting_grad_clip=None, **model)
  return preset


_REPEAT_COPY_CPU = _with(_ORIGINAL_REPEAT_COPY,
                         optimizer=dict(name="adam", learning_rate=3e-3,
                                        epsilon=1e-8),
                         loop=dict(steps=20_000, eval_every=500,
                                   checkpoint_every=500,
                                   stop_below=("valid/bit_errors", 0.5)))

PRESETS: Dict[str, Dict[str, Dict[str, Any]]] = {  # task -> name -> settings
    "repeat_copy": {
        "original": _ORIGINAL_REPEAT_COPY,
        "default": _REPEAT_COPY_CPU,
        "ntm": _as_ntm(_REPEAT_COPY_CPU),
    },
    "copy": dict(
        **{"default": _with(_COPY_CPU, model=_LINKS["dense"])},
        **{name: _with(_COPY_CPU, model=links)
           for name, links in _LINKS.items()},
        **{f"paper_{name}": _with(_COPY_PAPER, model=links)
           for name, links in _LINKS.items()},
        ntm=_as_ntm(_COPY_CPU), paper_ntm=_as_ntm(_COPY_PAPER)),
    "dynamic_allocation_copy": {"default": _DYNAMIC_ALLOCATION,
                                "ntm": _as_ntm(_DYNAMIC_ALLOCATION)},
}



