"""The bit tasks' batches, masks, loss and metrics."""

import jax.numpy as jnp
import numpy as np
import pytest

from experiments.tasks.bit import (Copy, DynamicAllocationCopy, RepeatCopy,
                                   bit_metrics, sigmoid_cross_entropy)


def rng(seed=0):
  return np.random.default_rng(seed)


def test_copy_targets_follow_the_delimiter():
  task = Copy(num_bits=3, min_length=2, max_length=5)
  batch = task.sample(rng(), 8)
  assert batch.inputs.shape == (11, 8, 4)
  assert batch.targets.shape == (11, 8, 3)
  assert batch.mask.shape == (11, 8)
  for b in range(8):
    delimiter = np.nonzero(batch.inputs[:, b, 3])[0]
    assert len(delimiter) == 1
    length = int(delimiter[0])
    assert 2 <= length <= 5
    np.testing.assert_array_equal(
        batch.targets[length + 1:2 * length + 1, b],
        batch.inputs[:length, b, :3])
    assert batch.mask[:, b].sum() == length
    assert np.all(batch.mask[length + 1:2 * length + 1, b] == 1)
    # Nothing is shown while the copy is due, nothing is due while shown.
    assert np.all(batch.inputs[length + 1:, b] == 0)
    assert np.all(batch.targets[:length + 1, b] == 0)


def test_repeat_copy_layout():
  task = RepeatCopy(num_bits=4, min_length=3, max_length=3, min_repeats=2,
                    max_repeats=2)
  batch = task.sample(rng(1), 4)
  assert batch.inputs.shape == (task.max_time, 4, 6) == (12, 4, 6)
  for b in range(4):
    pattern = batch.inputs[1:4, b, :4]
    assert batch.inputs[0, b, 4] == 1.0
    np.testing.assert_allclose(batch.inputs[4, b, 5], 2 / 10)
    np.testing.assert_array_equal(batch.targets[5:11, b, :4],
                                  np.concatenate([pattern, pattern]))
    assert batch.targets[11, b, 4] == 1.0
    np.testing.assert_array_equal(batch.mask[:, b], [0] * 5 + [1] * 7)


def test_dynamic_allocation_copy_episodes():
  task = DynamicAllocationCopy(num_bits=6, num_sequences=10)
  batch = task.sample(rng(2), 3)
  assert batch.inputs.shape == (110, 3, 7)
  assert batch.mask.sum(0).tolist() == [50.0] * 3
  for start in range(0, 110, 11):
    np.testing.assert_array_equal(batch.targets[start + 6:start + 11],
                                  batch.inputs[start:start + 5, :, :6])
    assert np.all(batch.inputs[start + 5, :, 6] == 1)


@pytest.mark.parametrize("task", [Copy(max_length=4), RepeatCopy(),
                                  DynamicAllocationCopy(num_sequences=2)])
def test_sampling_is_seeded_and_longer_is_longer(task):
  a, b = task.sample(rng(5), 4), task.sample(rng(5), 4)
  for x, y in zip(a, b):
    np.testing.assert_array_equal(x, y)
  assert task.longer().max_time > task.max_time
  assert task.longer().sample(rng(), 2).inputs.shape[0] == (
      task.longer().max_time)


@pytest.mark.parametrize("make,message", [
    (lambda: Copy(min_length=0), "length must satisfy"),
    (lambda: Copy(min_length=5, max_length=4), "length must satisfy"),
    (lambda: RepeatCopy(min_repeats=3, max_repeats=2), "repeats must satisfy"),
    (lambda: RepeatCopy(repeat_norm=0), "repeat_norm must be > 0"),
    (lambda: DynamicAllocationCopy(num_sequences=2.5), "must be ints"),
])
def test_bad_task_settings(make, message):
  with pytest.raises(ValueError, match=message):
    make()


def test_loss_and_metrics_against_numpy():
  task = Copy(num_bits=3, min_length=1, max_length=4)
  batch = task.sample(rng(3), 5)
  logits = rng(4).normal(size=batch.targets.shape) * 3
  p = 1 / (1 + np.exp(-logits))
  xent = -(batch.targets * np.log(p) + (1 - batch.targets) * np.log(1 - p))
  want = (xent.sum(-1) * batch.mask).sum() / 5
  np.testing.assert_allclose(sigmoid_cross_entropy(jnp.asarray(logits), batch),
                             want, rtol=1e-5)
  wrong = ((logits > 0) != (batch.targets > 0.5)).sum(-1) * batch.mask
  errors = wrong.sum(0)
  got = bit_metrics(jnp.asarray(logits), batch)
  np.testing.assert_allclose(got["bit_errors"], errors.mean(), rtol=1e-6)
  np.testing.assert_allclose(got["perfect"], (errors == 0).mean())
  perfect = bit_metrics(jnp.asarray(np.where(batch.targets > 0, 5., -5.)),
                        batch)
  assert float(perfect["bit_errors"]) == 0 and float(perfect["perfect"]) == 1
