"""Vector encoding of graph triples, the digit loss and modal prediction.

PROTOCOL §1.1–1.2. A label is an integer in [0, 999] written as three
decimal digits, most significant first (a choice: the paper does not say),
each a 10-way one-hot: 30 elements. A triple is (source, edge, destination)
(the Methods' order; the Fig. 2 caption's order is not used): 90 elements.
A blank label (``BLANK``, the paper's '_') is 30 zeros.

Inputs have ``INPUT_SIZE = 92`` channels: the 90 triple elements, then
``PHASE_CHANNEL`` (90) and ``ANSWER_CHANNEL`` (91). Choice for the two
channels (PROTOCOL §1.1 reading A): the phase channel is a one-step pulse
on the first step of every phase after the description (each query, each
planning phase, each answer phase); the answer channel is held at 1 on every
step of every answer phase.

Outputs are 90 logits read as nine 10-way softmaxes (3 labels x 3 digits).
The loss is the sum of the nine digit cross-entropies on answer steps
(PROTOCOL §1.2, read as a sum over the nine digits), summed over time and
averaged over the batch. The prediction is the per-digit argmax, which is the
mode of the factorised distribution.

Termination (PROTOCOL §1.2, pattern NOT STATED): every answer phase ends with
one extra answer step whose target is ``TERMINATION = (999, 999, 999)``.
Node labels are unique within a graph and no graph has a self-loop, so no real
triple has source label == destination label: the pattern can never be a
graph triple.
"""

from __future__ import annotations

from typing import Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np

NUM_LABELS = 1000
DIGITS = 3
BLANK = -1
TRIPLE_SIZE = 90
PHASE_CHANNEL = 90
ANSWER_CHANNEL = 91
INPUT_SIZE = 92
OUTPUT_SIZE = 90
TERMINATION = (999, 999, 999)

Triple = Tuple[int, int, int]


def _check_label(label: int):
  if label != BLANK and not 0 <= label < NUM_LABELS:
    raise ValueError(f"label must be in [0, {NUM_LABELS - 1}] or BLANK, "
                     f"got {label!r}")


def encode_triple(triple: Sequence[int]) -> np.ndarray:
  """``[90]`` float32: three 30-element labels, blanks all-zero."""
  if len(triple) != 3:
    raise ValueError(f"a triple has 3 labels, got {triple!r}")
  out = np.zeros(TRIPLE_SIZE, np.float32)
  for field, label in enumerate(triple):
    label = int(label)
    _check_label(label)
    if label == BLANK:
      continue
    for position, digit in enumerate(label_digits(label)):
      out[30 * field + 10 * position + digit] = 1.0
  return out


def label_digits(label: int) -> Tuple[int, int, int]:
  """Most significant digit first: ``label_digits(42) == (0, 4, 2)``."""
  return label // 100, (label // 10) % 10, label % 10


def decode_triple(vector: np.ndarray) -> Triple:
  """Inverse of :func:`encode_triple` (argmax per digit; all-zero -> BLANK).

  Args:
    vector: ``[>=90]`` one-hot triple or logits (only the first 90 used).
  """
  digits = np.asarray(vector[:TRIPLE_SIZE]).reshape(3, DIGITS, 10)
  out = []
  for field in range(3):
    if not np.any(digits[field]):
      out.append(BLANK)
      continue
    d = np.argmax(digits[field], -1)
    out.append(int(d[0] * 100 + d[1] * 10 + d[2]))
  return tuple(out)


def triples_to_digits(triples: jax.Array) -> jax.Array:
  """``[..., 3]`` int labels (no blanks) -> ``[..., 9]`` digits (jit-able)."""
  hundreds = triples // 100
  tens = (triples // 10) % 10
  units = triples % 10
  return jnp.stack([hundreds, tens, units], -1).reshape(
      triples.shape[:-1] + (9,))


def encode_triples_jax(triples: jax.Array) -> jax.Array:
  """``[..., 3]`` int labels (no blanks) -> ``[..., 90]`` one-hot (jit-able)."""
  one_hot = jax.nn.one_hot(triples_to_digits(triples), 10)
  return one_hot.reshape(triples.shape[:-1] + (TRIPLE_SIZE,))


def digit_log_probs(logits: jax.Array) -> jax.Array:
  """``[..., 90]`` logits -> ``[..., 9, 10]`` per-digit log-softmax."""
  return jax.nn.log_softmax(logits.reshape(logits.shape[:-1] + (9, 10)), -1)


def digit_loss(logits: jax.Array, targets: jax.Array,
               mask: jax.Array) -> jax.Array:
  """Summed digit cross-entropy on masked steps, mean over the batch.

  Args:
    logits: ``[T, B, 90]``.
    targets: ``[T, B, 90]`` one-hot triples.
    mask: ``[T, B]``, 1 on answer steps (A(t) of PROTOCOL §1.2).

  Returns:
    Scalar: ``-sum_t A(t) sum_{9 digits} log p(target digit)`` / B.
  """
  log_probs = digit_log_probs(logits)
  picked = jnp.sum(log_probs * targets.reshape(log_probs.shape), (-2, -1))
  return -jnp.sum(picked * mask) / logits.shape[1]


def modal_digits(logits) -> np.ndarray:
  """``[..., 90]`` -> ``[..., 9]`` per-digit argmax (the modal prediction)."""
  logits = np.asarray(logits)
  return np.argmax(logits.reshape(logits.shape[:-1] + (9, 10)), -1)


def step_correct(logits: jax.Array, targets: jax.Array) -> jax.Array:
  """``[T, B]`` bool: all nine modal digits equal the target's digits."""
  shape = logits.shape[:-1] + (9, 10)
  predicted = jnp.argmax(logits.reshape(shape), -1)
  wanted = jnp.argmax(targets.reshape(shape), -1)
  return jnp.all(predicted == wanted, -1)


def episode_correct(logits, targets, mask) -> np.ndarray:
  """``[B]`` bool: every masked step of the episode predicted exactly."""
  right = np.asarray(step_correct(jnp.asarray(logits), jnp.asarray(targets)))
  mask = np.asarray(mask) > 0
  return np.all(right | ~mask, 0)


def encode_triples(triples: np.ndarray) -> np.ndarray:
  """Vectorised :func:`encode_triple`: ``[M, 3]`` labels -> ``[M, 90]``."""
  triples = np.asarray(triples, np.int64).reshape(-1, 3)
  if np.any((triples < BLANK) | (triples >= NUM_LABELS)):
    raise ValueError(f"labels must be in [0, {NUM_LABELS - 1}] or BLANK")
  out = np.zeros((len(triples), TRIPLE_SIZE), np.float32)
  rows = np.arange(len(triples))
  for field in range(3):
    label = triples[:, field]
    keep = label != BLANK
    for position, digit in enumerate((label // 100, (label // 10) % 10,
                                      label % 10)):
      out[rows[keep], 30 * field + 10 * position + digit[keep]] = 1.0
  return out
