"""Training speed of the bAbI model on bAbI-length sequences, in stories/s.

    python -m benchmarks.babi_speed                      # dnc1, batch 16
    python -m benchmarks.babi_speed --batch-sizes 16,32,64 --backends auto,xla
    python -m benchmarks.babi_speed --link-sparsities 0,8  # dense, sparse K=8

The bAbI loop trains on batches of stories padded to a few bucket lengths
(``experiments.tasks.babi.BUCKETS``), one bucket per batch, drawn in
proportion to how many stories fall in each. This benchmark reads the
story lengths from the training files (``--data-dir``), times one training
step (forward, gradient, clipping, RMSProp with momentum: the ``dnc1``
preset's recipe) of the ``dnc1`` model (LSTM 256, memory 256 x 64, 4 read
heads, the data's vocabulary) on random tokens at each bucket length that
holds at least ``--min-share`` of the stories, and combines them:

  seconds per batch = sum over buckets of share x seconds at that length
  stories/s         = batch size / seconds per batch
  seq-steps/s       = batch size x mean padded length / seconds per batch

Buckets below ``--min-share`` are left out and the shares renormalised
(printed, so the coverage is visible). Each batch size and backend runs in
a fresh process; the median of ``--steps`` steps after ``--warmup`` per
bucket. Report ratios from one run: the machines are shared.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import subprocess
import sys
import time
from typing import Dict, List, Optional

REPO = pathlib.Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "babi" / "en-10k"


def bucket_shares(data_dir: pathlib.Path) -> Dict[str, object]:
  """Story-length buckets of the training files and each one's share."""
  from experiments.babi_data import parse_file, task_files
  from experiments.tasks.babi import BUCKETS, bucket_of

  counts: Dict[int, int] = {}
  words = set()
  for task, path in sorted(task_files(data_dir, "train").items()):
    for story in parse_file(path, task):
      bucket = bucket_of(len(story.tokens), BUCKETS)
      counts[bucket] = counts.get(bucket, 0) + 1
      words.update(story.tokens)
      words.update(story.answers)
  total = sum(counts.values())
  return {"shares": {b: c / total for b, c in sorted(counts.items())},
          "stories": total,
          "vocab_size": len(words) + 1}  # + padding


def measure(config: Dict) -> Dict:
  """Seconds per training step at each bucket length, in this process."""
  import haiku as hk
  import jax
  import jax.numpy as jnp
  import optax

  from dnc_jax import DNC, DNCConfig, unroll

  batch, vocab = config["batch_size"], config["vocab_size"]
  model_config = DNCConfig(
      output_size=vocab, input_size=vocab, memory_size=256, word_size=64,
      num_reads=4, hidden_size=256, controller_grad_clip=10.0,
      memory_backend=config["backend"],
      link_sparsity=config.get("link_sparsity") or None)

  def forward(tokens):
    core = DNC(model_config)
    inputs = jax.nn.one_hot(tokens, vocab)
    return unroll(core, inputs, core.initial_state(batch),
                  remat_chunk=config.get("remat_chunk"))[0]

  model = hk.without_apply_rng(hk.transform(forward))
  optimizer = optax.chain(
      optax.clip_by_global_norm(50.0),
      optax.rmsprop(1e-4, decay=0.9, eps=1e-10, initial_scale=1.0,
                    eps_in_sqrt=True, momentum=0.9))

  @jax.jit
  def train_step(params, opt_state, tokens, targets, mask):
    def loss(p):
      logits = model.apply(p, tokens)
      losses = optax.softmax_cross_entropy_with_integer_labels(logits,
                                                               targets)
      return jnp.sum(losses * mask) / batch
    value, grads = jax.value_and_grad(loss)(params)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, value

  result = {"seconds": {}, "compile_s": {}}
  params = opt_state = None
  for length in config["buckets"]:
    key = jax.random.PRNGKey(length)
    tokens = jax.random.randint(key, (length, batch), 1, vocab)
    targets = jax.random.randint(jax.random.PRNGKey(1), (length, batch), 1,
                                 vocab)
    mask = (jax.random.uniform(jax.random.PRNGKey(2), (length, batch))
            < 0.1).astype(jnp.float32)
    if params is None:
      params = model.init(key, tokens)
      opt_state = optimizer.init(params)
    args = (params, opt_state, tokens, targets, mask)
    start = time.perf_counter()
    compiled = train_step.lower(*args).compile()
    result["compile_s"][length] = time.perf_counter() - start
    for _ in range(config["warmup"]):
      jax.block_until_ready(compiled(*args))
    times = []
    for _ in range(config["steps"]):
      start = time.perf_counter()
      jax.block_until_ready(compiled(*args))
      times.append(time.perf_counter() - start)
    result["seconds"][length] = statistics.median(times)
  return result


def combine(shares: Dict[int, float], seconds: Dict[int, float],
            batch_size: int) -> Dict[str, float]:
  """Stories/s and seq-steps/s of the bucket mixture (shares renormalised)."""
  timed = {b: s for b, s in shares.items() if b in seconds}
  coverage = sum(timed.values())
  per_batch = sum(s * seconds[b] for b, s in timed.items()) / coverage
  mean_length = sum(s * b for b, s in timed.items()) / coverage
  return {"stories_per_s": batch_size / per_batch,
          "seq_steps_per_s": batch_size * mean_length / per_batch,
          "seconds_per_batch": per_batch, "coverage": coverage}


def main(argv: Optional[List[str]] = None) -> int:
  parser = argparse.ArgumentParser(
      description=__doc__.split("\n\n")[0],
      formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--single", help=argparse.SUPPRESS)
  parser.add_argument("--data-dir", default=str(DEFAULT_DATA),
                      help="bAbI en-10k folder (story lengths)")
  parser.add_argument("--batch-sizes", default="16")
  parser.add_argument("--backends", default="auto")
  parser.add_argument("--remat-chunk", type=int, default=None)
  parser.add_argument("--link-sparsities", default="0",
                      help="comma-separated sparse-link K (0: the exact "
                      "dense link, the dnc1 preset's)")
  parser.add_argument("--min-share", type=float, default=0.01,
                      help="time buckets holding at least this share")
  parser.add_argument("--steps", type=int, default=5)
  parser.add_argument("--warmup", type=int, default=1)
  parser.add_argument("--timeout", type=float, default=3600)
  parser.add_argument("--json", default=None)
  args = parser.parse_args(argv)

  if args.single:
    print(json.dumps(measure(json.loads(args.single))))
    return 0
  data_dir = pathlib.Path(args.data_dir)
  if not data_dir.is_dir():
    parser.error(f"--data-dir {data_dir}: no such folder")
  data = bucket_shares(data_dir)
  shares = data["shares"]
  buckets = [b for b, s in shares.items() if s >= args.min_share]
  print(f"{data['stories']} training stories; buckets timed: "
        + ", ".join(f"{b} ({100 * shares[b]:.1f}%)" for b in buckets)
        + f"; coverage {100 * sum(shares[b] for b in buckets):.1f}%",
        flush=True)
  rows = []
  print("| backend | link | batch | stories/s | seq-steps/s | s per batch "
        "| per bucket (s) |\n|---|---|---|---|---|---|---|", flush=True)
  grid = [(backend, int(k), int(b))
          for backend in args.backends.split(",")
          for k in args.link_sparsities.split(",")
          for b in args.batch_sizes.split(",")]
  for backend, sparsity, batch in grid:
    link = f"sparse K={sparsity}" if sparsity else "dense"
    config = dict(backend=backend, batch_size=batch,
                  vocab_size=data["vocab_size"], buckets=buckets,
                  remat_chunk=args.remat_chunk, steps=args.steps,
                  warmup=args.warmup, link_sparsity=sparsity)
    try:
      done = subprocess.run(
          [sys.executable, "-m", "benchmarks.babi_speed", "--single",
           json.dumps(config)], capture_output=True, text=True,
          timeout=args.timeout, cwd=REPO)
      if done.returncode != 0:
        raise RuntimeError(done.stderr.strip().splitlines()[-1])
      result = json.loads(done.stdout.strip().splitlines()[-1])
    except (RuntimeError, subprocess.TimeoutExpired) as error:
      print(f"| {backend} | {link} | {batch} | error: {error} | | | |",
            flush=True)
      continue
    seconds = {int(b): s for b, s in result["seconds"].items()}
    row = dict(config, **combine(shares, seconds, batch), seconds=seconds)
    rows.append(row)
    per_bucket = ", ".join(f"{b}: {s:.2f}" for b, s in seconds.items())
    print(f"| {backend} | {link} | {batch} | {row['stories_per_s']:.1f} | "
          f"{row['seq_steps_per_s']:,.0f} | "
          f"{row['seconds_per_batch']:.2f} | {per_bucket} |", flush=True)
    if args.json:
      pathlib.Path(args.json).write_text(json.dumps(rows, indent=2))
  return 0


if __name__ == "__main__":
  sys.exit(main())
