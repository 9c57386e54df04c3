"""Time of one NTM step against one DNC step, same sizes.

    python -m benchmarks.ntm_step [--memory-size 256] [--batch-size 16]

LSTM 256 controller, N = 256, W = 64, R = 4, one write head, B = 16 by
default; the NTM's shift range is 1, the DNC has its dense temporal link and
its default memory backend. For each core it prints the median over
``--repeats`` calls (after ``--warmup``) of a jitted single step: the
forward pass, and forward + gradient of the summed output with respect to
the parameters and the previous state. Wall-clock on this machine; compare
the two rows of one run, not absolute times across machines.
"""

from __future__ import annotations

import argparse
import statistics
import time


def _median_ms(fn, args, warmup: int, repeats: int) -> float:
  import jax
  for _ in range(warmup):
    jax.block_until_ready(fn(*args))
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - start)
  return 1e3 * statistics.median(times)


def time_core(make_core, batch: int, inputs: int, warmup: int,
              repeats: int):
  """``(forward ms, forward+grad ms)`` of one jitted step of ``make_core()``."""
  import haiku as hk
  import jax
  import jax.numpy as jnp

  def step(x, state):
    core = make_core()
    if state is None:
      state = core.initial_state(batch)
    return core(x, state)

  fn = hk.without_apply_rng(hk.transform(step))
  init_state = hk.without_apply_rng(hk.transform(
      lambda: make_core().initial_state(batch))).apply({})
  x = jax.random.normal(jax.random.PRNGKey(0), (batch, inputs))
  params = fn.init(jax.random.PRNGKey(1), x, None)
  forward = jax.jit(fn.apply)

  def loss(p, s):
    out, _ = fn.apply(p, x, s)
    return jnp.sum(out)

  grad = jax.jit(jax.grad(loss, argnums=(0, 1)))
  return (_median_ms(forward, (params, x, init_state), warmup, repeats),
          _median_ms(lambda p, s: grad(p, s), (params, init_state), warmup,
                     repeats))


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--memory-size", type=int, default=256)
  parser.add_argument("--word-size", type=int, default=64)
  parser.add_argument("--num-reads", type=int, default=4)
  parser.add_argument("--batch-size", type=int, default=16)
  parser.add_argument("--hidden-size", type=int, default=256)
  parser.add_argument("--inputs", type=int, default=8)
  parser.add_argument("--warmup", type=int, default=3)
  parser.add_argument("--repeats", type=int, default=20)
  args = parser.parse_args(argv)

  import jax
  from dnc_jax.dnc import DNC
  from dnc_jax.config import DNCConfig
  from dnc_jax.ntm import NTM, NTMConfig

  common = dict(output_size=args.inputs, memory_size=args.memory_size,
                word_size=args.word_size, num_reads=args.num_reads,
                num_writes=1, hidden_size=args.hidden_size,
                input_size=args.inputs)
  ntm_config = NTMConfig(shift_range=1, **common)
  dnc_config = DNCConfig(**common)
  print(f"backend {jax.default_backend()}, N={args.memory_size}, "
        f"W={args.word_size}, R={args.num_reads}, B={args.batch_size}, "
        f"LSTM {args.hidden_size}; median of {args.repeats} after "
        f"{args.warmup} warm-up calls")
  print("| core | step forward (ms) | step forward+grad (ms) |")
  print("|------|------------------:|-----------------------:|")
  for name, make in [("NTM", lambda: NTM(ntm_config)),
                     ("DNC", lambda: DNC(dnc_config))]:
    fwd, bwd = time_core(make, args.batch_size, args.inputs, args.warmup,
                         args.repeats)
    print(f"| {name} | {fwd:.3f} | {bwd:.3f} |")


if __name__ == "__main__":
  main()
