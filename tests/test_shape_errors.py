"""Mismatched shapes raise a ValueError naming the operand, on every backend.

Before 0.2.0 the fused kernels read such operands out of bounds or returned
NaN; every entry point now checks static shapes before any call is issued.
"""

import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from helpers import random_interface, random_state
from dnc_jax import (DNC, DNCConfig, MemoryAccess, cpu_kernels, fused,
                     initial_access_state, memory_step, sorting)
from dnc_jax.links import indexed

B, N, W, R, H = 2, 6, 3, 2, 1
BACKENDS = ["xla", "auto", "pallas"] + (["fused"] if cpu_kernels.compiler()
                                        else [])


def case(seed=0):
  rng = np.random.default_rng(seed)
  return random_interface(rng, B, R, H, W), random_state(rng, B, N, W, R, H)


def state_changes():
  """(description, function of (iface, state), operand named) triples."""
  iface, state = case()
  other_batch_iface, other_batch_state = (
      random_interface(np.random.default_rng(1), B + 1, R, H, W),
      random_state(np.random.default_rng(1), B + 1, N, W, R, H))
  other_word = random_interface(np.random.default_rng(2), B, R, H, W + 1)
  other_reads = random_interface(np.random.default_rng(3), B, R + 1, H, W)
  linkage = state.linkage
  return [
      ("state batch", iface, state._replace(
          read_weights=other_batch_state.read_weights), "read_weights"),
      ("interface batch", iface._replace(
          write_gates=other_batch_iface.write_gates), state, "write_gates"),
      ("word size", iface._replace(read_keys=other_word.read_keys), state,
       "read_keys"),
      ("read heads", iface._replace(free_gates=other_reads.free_gates), state,
       "free_gates"),
      ("read heads (modes)", iface._replace(
          read_modes=other_reads.read_modes), state, "read_modes"),
      ("read modes width", iface._replace(
          read_modes=iface.read_modes[..., :2]), state, "read_modes"),
      ("link side", iface, state._replace(linkage=linkage._replace(
          link=linkage.link[..., :N - 1, :N - 1])), "link"),
      ("usage length", iface, state._replace(usage=state.usage[:, :N - 1]),
       "usage"),
      ("memory rank", iface, state._replace(memory=state.memory[0, 0]),
       "memory"),
  ]


CHANGES = state_changes()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("index", range(len(CHANGES)),
                         ids=[c[0] for c in CHANGES])
def test_memory_step_names_the_mismatched_operand(backend, index):
  _, iface, state, operand = CHANGES[index]
  with pytest.raises(ValueError, match=operand):
    memory_step(iface, state, backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_sparse_step_names_the_mismatched_operand(backend):
  config = DNCConfig(output_size=1, memory_size=N, word_size=W, num_reads=R,
                     num_writes=H, link_sparsity=2)
  iface, _ = case()
  state = initial_access_state(config, B, jnp.float64)
  bad = state._replace(linkage=state.linkage._replace(
      link_values=state.linkage.link_values[..., :N - 1, :]))
  with pytest.raises(ValueError, match="link_values"):
    memory_step(iface, bad, backend=backend)
  with pytest.raises(ValueError, match="does not match the indexed link"):
    memory_step(iface, state, link_sparsity=3, backend=backend)


@pytest.mark.skipif(cpu_kernels.compiler() is None, reason="no compiler")
def test_fused_kernel_checks_its_operands_itself():
  iface, state = case()
  bad = state._replace(write_weights=state.write_weights[..., :N - 1])
  with pytest.raises(ValueError, match=r"fused memory step: write_weights "
                     r"has shape \(2, 1, 5\)"):
    fused.memory_step(iface, bad)
  f32 = iface._replace(write_vectors=jnp.asarray(iface.write_vectors,
                                                 jnp.float32))
  with pytest.raises(ValueError, match="write_vectors has dtype float32 but "
                     "read_keys has float64"):
    fused.memory_step(f32, state)


def module_configs():
  small = dict(output_size=2, memory_size=N, word_size=W, num_reads=R)
  return DNCConfig(**small), [
      ("num_reads", DNCConfig(**{**small, "num_reads": R + 1})),
      ("word_size", DNCConfig(**{**small, "word_size": W + 1})),
      ("memory_size", DNCConfig(**{**small, "memory_size": N + 1})),
  ]


@pytest.mark.parametrize("backend", BACKENDS)
def test_memory_access_and_dnc_refuse_a_state_of_another_config(backend):
  base, others = module_configs()
  base = base.replace(memory_backend=backend)
  x = jnp.ones((B, 4), jnp.float32)
  for field, other in others:
    def access(x):
      return MemoryAccess(base)(x, initial_access_state(other, B))

    with pytest.raises(ValueError, match="memory_step: "):
      hk.transform(access).init(jax.random.PRNGKey(0), x)

    def dnc(x):
      state = DNC(other, name="other").initial_state(B)
      return DNC(base)(x, state)

    with pytest.raises(ValueError, match="memory_step: "):
      hk.transform(dnc).init(jax.random.PRNGKey(0), x)


@pytest.mark.parametrize("backend", BACKENDS)
def test_link_functions_name_the_mismatched_operand(backend):
  rng = np.random.default_rng(0)
  k = 2
  indices = np.zeros((B, H, N, k), np.int32)
  values = rng.uniform(size=(B, H, N, k))
  prec = rng.uniform(size=(B, H, N))
  write = rng.uniform(size=(B, H, N))
  with pytest.raises(ValueError, match="sparse link update: write_weights"):
    indexed.update(indices, values, prec, write[..., :N - 1], backend=backend)
  with pytest.raises(ValueError, match="sparse link update: values"):
    indexed.update(indices, values[..., :1], prec, write, backend=backend)
  with pytest.raises(ValueError, match=r"K = 7 .* must be in \[1, N = 6\]"):
    indexed.update(np.zeros((B, H, N, N + 1), np.int32),
                   np.zeros((B, H, N, N + 1)), prec, write, backend=backend)
  read = rng.dirichlet(np.ones(N), size=(B, R))
  memory = rng.normal(size=(B, N, W))
  modes = rng.dirichlet(np.ones(1 + 2 * H), size=(B, R))
  with pytest.raises(ValueError, match="sparse link read-out: memory"):
    indexed.read_out(indices, values, read, read, modes, memory[:, :N - 1],
                     backend=backend)
  with pytest.raises(ValueError, match=r"read-out: M = 2 .* 1 \+ 2H"):
    indexed.read_out(indices, values, read, read, modes[..., :2], memory,
                     backend=backend)
  with pytest.raises(ValueError, match="read-out: content"):
    indexed.read_out(indices, values, read, read[:1], modes, memory,
                     backend=backend)
  if backend not in ("xla", "pallas") and cpu_kernels.compiler():
    with pytest.raises(ValueError, match="indices must be int32"):
      indexed.update(indices.astype(np.int64), values, prec, write,
                     backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_sorting_refuses_bad_arguments(backend):
  x = jnp.zeros((2, 5))
  for k in (0, 6, 2.5, True):
    with pytest.raises(ValueError, match="top_k: k"):
      sorting.top_k(x, k, backend=backend)
  with pytest.raises(ValueError, match="argsort: x must have at least one"):
    sorting.argsort(jnp.float32(1.0), backend=backend)
