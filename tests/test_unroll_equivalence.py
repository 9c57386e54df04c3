"""``dnc_jax.unroll`` equals ``hk.dynamic_unroll``; pmap and shard_map too.

Float64 (conftest enables x64). Every chunking (``remat_chunk`` None, 2, 3
over T = 7 steps, so chunks of 2 and 3 leave a shorter last chunk) and
scan unroll (1, 2), for every link kind: values and gradients (parameters
and inputs) equal to the plain ``hk.dynamic_unroll``'s.
"""

import json
import os
import subprocess
import sys

import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dnc_jax import DNC, DNCConfig, unroll

LINKS = {
    "dense": dict(),
    "sparse_dense_stored": dict(link_sparsity=2, link_storage="dense"),
    "indexed": dict(link_sparsity=2, link_storage="indexed"),
    "no_links": dict(use_temporal_links=False),
}
T, B, X = 7, 2, 4


def make(links, **unroll_args):
  config = DNCConfig(output_size=3, memory_size=6, word_size=3, num_reads=2,
                     hidden_size=8, **LINKS[links])

  def run(inputs):
    core = DNC(config)
    state = core.initial_state(B, jnp.float64)
    return unroll(core, inputs, state, **unroll_args)

  return hk.transform(run)


def plain(links):
  config = DNCConfig(output_size=3, memory_size=6, word_size=3, num_reads=2,
                     hidden_size=8, **LINKS[links])

  def run(inputs):
    core = DNC(config)
    return hk.dynamic_unroll(core, inputs, core.initial_state(B, jnp.float64))

  return hk.transform(run)


def value_and_grads(f, params, inputs, weights):
  def loss(params, inputs):
    outputs, state = f.apply(params, None, inputs)
    return (jnp.sum(outputs * weights)
            + jnp.sum(state.access_state.memory ** 2)), (outputs, state)

  return jax.jit(jax.value_and_grad(loss, argnums=(0, 1), has_aux=True))(
      params, inputs)


def check_unroll(links, grid):
  rng = np.random.default_rng(0)
  inputs = rng.normal(size=(T, B, X))
  weights = rng.normal(size=(T, B, 3))
  reference = plain(links)
  params = reference.init(jax.random.PRNGKey(0), inputs)
  (loss, aux), grads = value_and_grads(reference, params, inputs, weights)
  want = jax.tree.leaves((loss, aux, grads))
  assert any(np.any(np.asarray(g) != 0) for g in jax.tree.leaves(grads))
  for chunk, scan_unroll in grid:
    f = make(links, remat_chunk=chunk, scan_unroll=scan_unroll)
    got = jax.tree.leaves(value_and_grads(f, params, inputs, weights))
    assert len(got) == len(want)
    for x, y in zip(got, want):
      np.testing.assert_allclose(
          np.asarray(x), np.asarray(y), rtol=1e-10, atol=1e-12,
          err_msg=f"remat_chunk={chunk} scan_unroll={scan_unroll}")


# CI: per link kind, two settings between them covering a remainder chunk
# (3 over 7 steps), scan unrolling (2 over 7 steps leaves a remainder) and
# both together. The whole grid (each compiles a gradient) is slow.
# The dense link in the default run; the others run with the whole grid
# below (`slow`). The indexed link's gradients are test_gradients.py's and
# test_fused.py's.
@pytest.mark.parametrize("links", [
    l if l == "dense" else pytest.param(l, marks=pytest.mark.slow)
    for l in LINKS])
def test_unroll_equals_dynamic_unroll(links):
  check_unroll(links, [(None, 2), (3, 2)])


@pytest.mark.slow
@pytest.mark.parametrize("links", list(LINKS))
def test_unroll_equals_dynamic_unroll_whole_grid(links):
  check_unroll(links, [(c, u) for c in (None, 2, 3) for u in (1, 2)])


SCRIPT = r"""
import json, sys
import haiku as hk, jax, jax.numpy as jnp, numpy as np
from jax.sharding import Mesh, PartitionSpec as P
jax.config.update("jax_enable_x64", True)
from dnc_jax import DNC, DNCConfig, unroll
assert jax.device_count() == 4, jax.devices()
T, B, X = 5, 8, 4
config = DNCConfig(output_size=3, memory_size=6, word_size=3, num_reads=2,
                   hidden_size=8, link_sparsity=2)

def run(inputs):
  core = DNC(config)
  batch = inputs.shape[1]
  return unroll(core, inputs, core.initial_state(batch, jnp.float64))[0]

f = hk.transform(run)
inputs = np.random.default_rng(0).normal(size=(T, B, X))
params = f.init(jax.random.PRNGKey(0), inputs)
single = np.asarray(jax.jit(f.apply)(params, None, inputs))
# pmap: the batch split over 4 devices, parameters broadcast.
split = inputs.reshape(T, 4, B // 4, X).transpose(1, 0, 2, 3)
mapped = jax.pmap(f.apply, in_axes=(None, None, 0))(params, None, split)
pmapped = np.asarray(mapped).transpose(1, 0, 2, 3).reshape(T, B, 3)
# shard_map: the same split along the batch axis of a 4-device mesh.
mesh = Mesh(np.array(jax.devices()), ("data",))
sharded = jax.jit(jax.shard_map(
    lambda p, x: f.apply(p, None, x), mesh=mesh,
    in_specs=(P(), P(None, "data")), out_specs=P(None, "data"),
    check_vma=False))(params, inputs)
print("RESULT" + json.dumps(dict(
    pmap=float(np.max(np.abs(pmapped - single))),
    shard_map=float(np.max(np.abs(np.asarray(sharded) - single))),
    devices=len(sharded.sharding.device_set))))
"""


def test_pmap_and_shard_map_equal_one_device(tmp_path):
  env = {**os.environ,
         "XLA_FLAGS": (os.environ.get("XLA_FLAGS", "")
                       + " --xla_force_host_platform_device_count=4")}
  result = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True,
                          text=True, env=env, cwd=tmp_path, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  line = [l for l in result.stdout.splitlines() if l.startswith("RESULT")]
  got = json.loads(line[-1][len("RESULT"):])
  assert got["devices"] == 4
  assert got["pmap"] < 1e-12 and got["shard_map"] < 1e-12, got
