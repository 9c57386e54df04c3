"""Behaviours the paper describes, on hand-built interfaces."""

import jax
import jax.numpy as jnp
import numpy as np

from helpers import random_interface
from dnc_jax import (AccessState, DNCConfig, MemoryInterface, addressing,
                     initial_access_state, memory_step)

N, W, R = 6, 4, 1


def interface(*, write_gate=1.0, allocation_gate=1.0, free_gate=0.0,
              read_mode="content", read_key=None, read_strength=1.0,
              write_vector=None):
  modes = {"backward": [1, 0, 0], "content": [0, 1, 0], "forward": [0, 0, 1]}
  return MemoryInterface(
      read_keys=jnp.asarray(read_key if read_key is not None
                            else np.ones(W))[None, None],
      read_strengths=jnp.full((1, R), read_strength),
      write_keys=jnp.ones((1, 1, W)),
      write_strengths=jnp.ones((1, 1)),
      erase_vectors=jnp.ones((1, 1, W)),
      write_vectors=jnp.asarray(write_vector if write_vector is not None
                                else np.ones(W))[None, None],
      free_gates=jnp.full((1, R), free_gate),
      allocation_gates=jnp.full((1, 1), allocation_gate),
      write_gates=jnp.full((1, 1), write_gate),
      read_modes=jnp.asarray(modes[read_mode], jnp.float64)[None, None])


def zero_state():
  config = DNCConfig(output_size=1, memory_size=N, word_size=W, num_reads=R)
  return initial_access_state(config, 1, jnp.float64)


def test_least_used_slot_gets_the_allocation():
  usage = jnp.array([[0.9, 0.4, 0.05, 0.7, 0.3, 0.99]])
  state = zero_state()._replace(usage=usage)
  _, new = memory_step(interface(), state)
  assert int(jnp.argmax(new.write_weights[0, 0])) == 2
  assert float(new.write_weights[0, 0, 2]) > 0.9


def test_full_write_makes_usage_one():
  state = zero_state()._replace(
      write_weights=jnp.zeros((1, 1, N)).at[0, 0, 3].set(1.0))
  usage = addressing.usage_update(state.usage, state.write_weights,
                                  jnp.zeros((1, R)), state.read_weights)
  np.testing.assert_allclose(usage[0, 3], 1.0, atol=1e-12)


def test_read_with_free_gate_one_makes_usage_zero():
  usage = jnp.full((1, N), 0.8)
  read = jnp.zeros((1, R, N)).at[0, 0, 2].set(1.0)
  new = addressing.usage_update(usage, jnp.zeros((1, 1, N)),
                                jnp.ones((1, R)), read)
  assert float(new[0, 2]) == 0.0
  np.testing.assert_allclose(np.delete(np.asarray(new[0]), 2), 0.8)


def test_link_diagonal_zero_and_sums_at_most_one():
  rng = np.random.default_rng(3)
  config = DNCConfig(output_size=1, memory_size=8, word_size=W, num_reads=2,
                     num_writes=2)
  state = initial_access_state(config, 2, jnp.float64)
  step = jax.jit(memory_step)
  for _ in range(30):
    _, state = step(random_interface(rng, 2, 2, 2, W, sharp=3.0), state)
    link = np.asarray(state.linkage.link)
    assert np.all(np.diagonal(link, axis1=-2, axis2=-1) == 0.0)
    assert np.all(link >= -1e-12)
    assert np.all(link.sum(-1) <= 1 + 1e-9)
    assert np.all(link.sum(-2) <= 1 + 1e-9)
  assert link.max() > 0.1


def _write_sequence(length):
  """Writes `length` distinct words by allocation; returns the slots used."""
  state = zero_state()
  words = np.eye(W)[:length] * 3.0 + 0.5
  slots = []
  for t in range(length):
    _, state = memory_step(interface(write_vector=words[t]), state)
    slots.append(int(jnp.argmax(state.write_weights[0, 0])))
  return state, words, slots


def test_sequential_writes_use_fresh_slots_and_link_them():
  state, _, slots = _write_sequence(4)
  assert len(set(slots)) == 4
  link = np.asarray(state.linkage.link[0, 0])
  for earlier, later in zip(slots, slots[1:]):
    assert link[later, earlier] > 0.99


def test_forward_and_backward_reads_follow_write_order():
  state, words, slots = _write_sequence(4)
  at_second = state._replace(
      read_weights=jnp.zeros((1, R, N)).at[0, 0, slots[1]].set(1.0))
  read_f, after_f = memory_step(interface(write_gate=0.0, read_mode="forward"),
                                at_second)
  read_b, after_b = memory_step(
      interface(write_gate=0.0, read_mode="backward"), at_second)
  assert int(jnp.argmax(after_f.read_weights[0, 0])) == slots[2]
  assert int(jnp.argmax(after_b.read_weights[0, 0])) == slots[0]
  np.testing.assert_allclose(read_f[0, 0], words[2], atol=1e-3)
  np.testing.assert_allclose(read_b[0, 0], words[0], atol=1e-3)


def test_content_read_with_matching_key_returns_that_row():
  rng = np.random.default_rng(0)
  memory = rng.normal(size=(1, N, W))
  state = zero_state()._replace(memory=jnp.asarray(memory))
  read, new = memory_step(
      interface(write_gate=0.0, read_key=memory[0, 4], read_strength=100.0),
      state)
  assert int(jnp.argmax(new.read_weights[0, 0])) == 4
  np.testing.assert_allclose(read[0, 0], memory[0, 4], atol=1e-3)


def test_zero_memory_gives_finite_values_and_gradients():
  state = zero_state()

  def loss(iface):
    words, new = memory_step(iface, state)
    words2, _ = memory_step(iface, new)
    return jnp.sum(words ** 2) + jnp.sum(words2) + jnp.sum(new.usage)

  iface = interface(write_vector=np.zeros(W), read_key=np.zeros(W))
  value, grads = jax.value_and_grad(loss)(iface)
  assert np.isfinite(value)
  for leaf in jax.tree.leaves(grads):
    assert np.all(np.isfinite(np.asarray(leaf)))


def test_access_state_structure_is_preserved():
  state = zero_state()
  _, new = memory_step(interface(), state)
  assert isinstance(new, AccessState)
  assert jax.tree.structure(new) == jax.tree.structure(state)
  for a, b in zip(jax.tree.leaves(new), jax.tree.leaves(state)):
    assert a.shape == b.shape and a.dtype == b.dtype
