"""Time of one memory step alone: forward, and forward plus its VJP.

    python -m benchmarks.kernel --memory-size 256 --backends fused,xla

Compared with ``benchmarks.speed`` (whole DNC: controller, interface
projection, the unroll), this says how much of a training step the memory
step itself costs, per backend. Median milliseconds per call over
``--steps`` calls after one warm-up, from a state a few steps in.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from typing import List, Optional


def time_ms(fn, args, steps: int) -> float:
  import jax
  jax.block_until_ready(fn(*args))
  times = []
  for _ in range(steps):
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - start)
  return statistics.median(times) * 1e3


def main(argv: Optional[List[str]] = None) -> int:
  parser = argparse.ArgumentParser(
      description=__doc__.split("\n\n")[0],
      formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--memory-size", type=int, default=256)
  parser.add_argument("--word-size", type=int, default=64)
  parser.add_argument("--num-reads", type=int, default=4)
  parser.add_argument("--num-writes", type=int, default=1)
  parser.add_argument("--batch-size", type=int, default=16)
  parser.add_argument("--link-sparsity", type=int, default=None)
  parser.add_argument("--backends", default="fused,xla")
  parser.add_argument("--steps", type=int, default=50)
  args = parser.parse_args(argv)

  import jax
  from dnc_jax import (DNCConfig, initial_access_state, memory_step,
                       parse_interface)

  config = DNCConfig(output_size=1, input_size=1,
                     memory_size=args.memory_size, word_size=args.word_size,
                     num_reads=args.num_reads, num_writes=args.num_writes,
                     link_sparsity=args.link_sparsity)
  vector = jax.random.normal(jax.random.PRNGKey(0),
                             (args.batch_size, config.interface_size))
  interface = parse_interface(vector, config)
  print(f"N={args.memory_size} W={args.word_size} R={args.num_reads} "
        f"H={args.num_writes} B={args.batch_size} "
        f"K={args.link_sparsity or 'dense'}")
  print("| backend | forward ms | forward + VJP ms |")
  print("|---|---|---|")
  for backend in args.backends.split(","):
    def step(i, s, backend=backend):
      return memory_step(i, s, link_sparsity=args.link_sparsity,
                         backend=backend)

    def step_vjp(i, s):
      out, pullback = jax.vjp(step, i, s)
      return pullback(out)

    forward = jax.jit(step)
    state = initial_access_state(config, args.batch_size)
    for _ in range(5):
      _, state = forward(interface, state)
    print(f"| {backend} | {time_ms(forward, (interface, state), args.steps):.2f}"
          f" | {time_ms(jax.jit(step_vjp), (interface, state), args.steps):.2f}"
          " |")
  return 0


if __name__ == "__main__":
  sys.exit(main())
