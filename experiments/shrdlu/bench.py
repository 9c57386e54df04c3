r"""Boards stepped per second: jit + vmap over B boards vs plain Python.

  python -m experiments.shrdlu.bench [--batch 4096] [--steps 50]

The Python side loops over the independent reference in
``tests/test_shrdlu_reference.py`` (lists as stacks, one board at a time).
Both step the same episodes (Table 6 lesson 26) with random actions.
"""

from __future__ import annotations

import argparse
import importlib.util
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np

from experiments.shrdlu import curriculum
from experiments.shrdlu import env


def _reference():
  path = (pathlib.Path(__file__).resolve().parents[2] / "tests"
          / "test_shrdlu_reference.py")
  spec = importlib.util.spec_from_file_location("shrdlu_reference", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--batch", type=int, default=4096)
  parser.add_argument("--steps", type=int, default=50)
  parser.add_argument("--python-boards", type=int, default=64)
  args = parser.parse_args(argv)
  ref = _reference()
  lesson = curriculum.LESSONS[-1].as_array()
  state, _ = jax.jit(env.batch_reset)(
      jax.random.split(jax.random.PRNGKey(0), args.batch),
      jnp.tile(jnp.asarray(lesson), (args.batch, 1)), env.tables())
  # Start in the action phase so every step moves blocks.
  state = state._replace(t=state.num_present)
  actions = jnp.asarray(np.random.default_rng(0).integers(
      0, 7, (args.steps, args.batch)), jnp.int32)

  @jax.jit
  def run(state, actions):
    def body(state, action):
      state, obs, reward, _ = env.batch_step(state, action)
      return state, (obs.sum(), reward.sum())
    return jax.lax.scan(body, state, actions)

  jax.block_until_ready(run(state, actions))  # Compile.
  best = float("inf")
  for _ in range(3):
    start = time.perf_counter()
    jax.block_until_ready(run(state, actions))
    best = min(best, time.perf_counter() - start)
  fast = args.batch * args.steps / best

  eps = [ref.from_state(state, i) for i in range(args.python_boards)]
  acts = np.asarray(actions)
  start = time.perf_counter()
  for t in range(args.steps):
    for i, ep in enumerate(eps):
      eps[i] = ref.step(ep, int(acts[t, i]))[0]
  slow = args.python_boards * args.steps / (time.perf_counter() - start)
  print(f"jit + vmap, B = {args.batch}: {fast:,.0f} board-steps/s")
  print(f"plain Python reference: {slow:,.0f} board-steps/s")
  print(f"speed-up: {fast / slow:,.0f}x")


if __name__ == "__main__":
  main()
