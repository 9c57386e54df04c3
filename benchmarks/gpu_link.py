"""The dense link step on a GPU: XLA's against the Pallas kernels.

    python -m benchmarks.gpu_link --out benchmarks/results/gpu_link.md

Times ``dnc_jax.addressing.link_step`` (XLA) and
``dnc_jax.pallas_link.link_step`` (Pallas, compiled) on the same random
operands: the forward pass, and the forward pass plus its VJP for random
cotangents, each under ``jax.jit``, as the median milliseconds of
``--repeats`` calls (``block_until_ready``) after one warm-up call. Default
sizes: N = 256, 1024, 4096 at B = 16, H = 1, R = 4, float32; a few minutes
on one GPU. The table also gives the largest difference between the two
paths' results, so a wrong kernel cannot pass as a fast one.

This is the measurement ``memory_backend="auto"`` waits for before it takes
the Pallas kernels on a GPU (``docs/kernels.md``). On any other platform it
exits with a one-line message, unless ``--interpret`` is given: then it runs
the kernels in Pallas's interpret mode at tiny sizes, as a smoke test of the
script (those timings mean nothing).
"""

from __future__ import annotations

import argparse
import functools
import statistics
import sys
import time
from typing import List, Optional

INTERPRET_SIZES = "8,16"


def time_ms(fn, args, repeats: int) -> float:
  import jax
  jax.block_until_ready(fn(*args))
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - start)
  return statistics.median(times) * 1e3


def operands(batch: int, heads: int, n: int, reads: int, dtype, seed=0):
  """Random link-step operands (weights summing to 0.9) and cotangents."""
  import jax
  import jax.numpy as jnp
  keys = jax.random.split(jax.random.PRNGKey(seed), 8)

  def weights(key, *shape):
    x = jax.random.uniform(key, shape, dtype)
    return 0.9 * x / jnp.sum(x, axis=-1, keepdims=True)

  link = jax.random.uniform(keys[0], (batch, heads, n, n), dtype) / n
  args = (link, weights(keys[1], batch, heads, n),
          weights(keys[2], batch, heads, n), weights(keys[3], batch, reads, n))
  cotangents = (jax.random.normal(keys[4], link.shape, dtype),
                jax.random.normal(keys[5], (batch, reads, heads, n), dtype),
                jax.random.normal(keys[6], (batch, reads, heads, n), dtype))
  return args, cotangents


def max_difference(a, b) -> float:
  import jax
  import jax.numpy as jnp
  return max(float(jnp.max(jnp.abs(x - y)))
             for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def main(argv: Optional[List[str]] = None) -> int:
  parser = argparse.ArgumentParser(
      description=__doc__.split("\n\n")[0],
      formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--sizes", default=None,
                      help="memory sizes N, comma-separated (default "
                      f"256,1024,4096; with --interpret {INTERPRET_SIZES})")
  parser.add_argument("--batch-size", type=int, default=None,
                      help="B (default 16; with --interpret 2)")
  parser.add_argument("--num-writes", type=int, default=1)
  parser.add_argument("--num-reads", type=int, default=4)
  parser.add_argument("--repeats", type=int, default=None,
                      help="timed calls per entry (default 20; with "
                      "--interpret 2)")
  parser.add_argument("--block", type=int, default=None,
                      help="the Pallas tile side (a power of two; default "
                      "dnc_jax.pallas_link.DEFAULT_BLOCK_SIZE)")
  parser.add_argument("--interpret", action="store_true",
                      help="run the Pallas kernels in interpret mode at tiny "
                      "sizes (any platform; a smoke test, not a timing)")
  parser.add_argument("--out", default=None,
                      help="also write the table to this markdown file")
  args = parser.parse_args(argv)

  import jax
  import jax.numpy as jnp
  from dnc_jax import addressing, pallas_link

  platform = jax.default_backend()
  if platform != "gpu" and not args.interpret:
    print(f"gpu_link: no GPU here (JAX platform {platform!r}); this "
          "benchmark times the compiled Pallas kernels on a GPU, pass "
          "--interpret for a tiny smoke test in interpret mode",
          file=sys.stderr)
    return 2
  sizes = [int(s) for s in (args.sizes or (
      INTERPRET_SIZES if args.interpret else "256,1024,4096")).split(",")]
  batch = args.batch_size or (2 if args.interpret else 16)
  repeats = args.repeats or (2 if args.interpret else 20)
  heads, reads = args.num_writes, args.num_reads
  dtype = jnp.float32

  paths = {
      "xla": addressing.link_step,
      "pallas": functools.partial(pallas_link.link_step,
                                  interpret=args.interpret,
                                  block_size=args.block),
  }

  def with_vjp(fn, operands_, cotangents):
    out, pullback = jax.vjp(fn, *operands_)
    return out, pullback(cotangents)

  device = jax.devices()[0].device_kind
  mode = "interpret mode (not a timing)" if args.interpret else "compiled"
  lines = [f"Dense link step, {device}, Pallas {mode}; H={heads} R={reads} "
           f"B={batch} float32, median of {repeats} calls (ms)",
           "",
           "| N | pass | XLA ms | Pallas ms | XLA / Pallas | max abs diff |",
           "|---|---|---|---|---|---|"]
  print("\n".join(lines), flush=True)
  for n in sizes:
    operands_, cotangents = operands(batch, heads, n, reads, dtype)
    for name in ("forward", "forward + VJP"):
      if name == "forward":
        fns = {k: jax.jit(f) for k, f in paths.items()}
        call_args = operands_
      else:
        fns = {k: jax.jit(functools.partial(with_vjp, f))
               for k, f in paths.items()}
        call_args = (operands_, cotangents)
      diff = max_difference(fns["xla"](*call_args), fns["pallas"](*call_args))
      ms = {k: time_ms(f, call_args, repeats) for k, f in fns.items()}
      line = (f"| {n} | {name} | {ms['xla']:.3f} | {ms['pallas']:.3f} | "
              f"{ms['xla'] / ms['pallas']:.2f}x | {diff:.1e} |")
      lines.append(line)
      print(line, flush=True)
  if args.out:
    with open(args.out, "w") as f:
      f.write("\n".join(lines) + "\n")
  return 0


if __name__ == "__main__":
  sys.exit(main())
