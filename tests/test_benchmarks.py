"""The benchmark helpers that are not timings: HLO loop counting."""

import jax
import jax.numpy as jnp

from benchmarks import hlo_loops


def test_hlo_loops_finds_a_scan_body_and_its_work():
  def step(carry, x):
    carry = jnp.tanh(carry @ jnp.ones((4, 4)) + x)
    return carry, carry

  def run(xs):
    return jax.lax.scan(step, jnp.zeros(4), xs)[1]

  hlo = jax.jit(run).lower(jnp.ones((5, 4))).compile().as_text()
  loops = hlo_loops.loop_bodies(hlo)
  assert len(loops) == 1
  (counts,) = loops.values()
  assert sum(counts.values()) >= 1  # at least the matmul or its fusion
  assert not hlo_loops.loop_bodies(
      jax.jit(jnp.sin).lower(1.0).compile().as_text())
