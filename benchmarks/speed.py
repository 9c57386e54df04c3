"""Speed and memory of the DNC's forward pass and training step.

    python -m benchmarks.speed                       # the default grid
    python -m benchmarks.speed --memory-sizes 256 --links dense --peers
    python -m benchmarks.speed --memory-sizes 65536 --links sparse

For each configuration (LSTM 256, W = 64, R = 4 by default; ``N`` and the
link from the flags) it prints sequence-steps per second (batch x time /
seconds, the median of ``--steps`` steps after ``--warmup``) of the forward
pass and of a training step (forward, gradient, RMSProp update), the
compile time, and the peak memory: on CPU the resident memory of the timed
steps (the process's high-water mark, reset after compilation) and the
resident memory just before them (the runtime, parameters and compiled
code: what no step can save); on GPU the device memory in use at its peak
(jax cannot reset that mark, so the forward pass counts too).
Every configuration runs in a fresh process. ``--peers`` also times the
PyTorch peers on the same configuration, before and after our rows of each
memory size (``--peer-order after``: only after them): pytorch-dnc 2.0 from its source folder (``--peer-source``, by
default ``../shared/peers/pytorch-dnc``), the strongest peer, and the PyPI
``dnc`` 1.1.0, in their own virtual environment (or with
``--peer-python``'s interpreter; on the GPU where its torch sees one). Our
training speed, dense or sparse link, is printed as a ratio of the fastest
peer figure of the run at that size (the peers have only the exact dense
link). ``--hugepages`` runs every timed process (ours and the peers') with
glibc's malloc asking for transparent huge pages (see ``docs/kernels.md``,
"Where a training step's time goes"). ``--flops`` adds FLOPs per
sequence-step (by formula, see :func:`flops_per_seq_step`) and the
fraction of this machine's matmul peak (measured in the same run) that each
row's training speed reaches. Results are printed as a Markdown table and
written as JSON (``--json``).

The timings are wall-clock on whatever machine runs this; report ratios from
one run rather than absolute times.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import time
from typing import Dict, List, Optional

from benchmarks.rss import peak_rss_bytes, reset_peak_rss, rss_bytes

GIB = 2 ** 30
PEER_REQUIREMENTS = ["torch==2.13.0", "numpy"]
PEER_PACKAGE = "dnc==1.1.0"
# glibc's malloc then asks for transparent huge pages for its large blocks
# (docs/kernels.md, "Where a training step's time goes").
HUGEPAGE_TUNABLE = "glibc.malloc.hugetlb=1"


def measure(config: Dict) -> Dict:
  """Times one configuration in this process (see the module docstring)."""
  import haiku as hk
  import jax
  import jax.numpy as jnp
  import optax

  from dnc_jax import DNC, DNCConfig, unroll

  batch, steps_t = config["batch_size"], config["time"]
  model_config = DNCConfig(
      output_size=config["inputs"], input_size=config["inputs"],
      memory_size=config["memory_size"], word_size=config["word_size"],
      num_reads=config["num_reads"], hidden_size=config["hidden_size"],
      link_sparsity=config["link_sparsity"],
      memory_backend=config["backend"])

  def forward(inputs):
    core = DNC(model_config)
    return unroll(core, inputs, core.initial_state(batch),
                  remat_chunk=config["remat_chunk"],
                  scan_unroll=config.get("scan_unroll", 1))[0]

  model = hk.without_apply_rng(hk.transform(forward))
  key = jax.random.PRNGKey(0)
  inputs = jax.random.normal(key, (steps_t, batch, config["inputs"]))
  targets = jax.random.normal(jax.random.PRNGKey(1), inputs.shape)
  params = model.init(key, inputs)
  optimizer = optax.chain(optax.clip_by_global_norm(50.0),
                          optax.rmsprop(1e-4, eps=1e-10, initial_scale=1.0))
  opt_state = optimizer.init(params)

  @jax.jit
  def forward_step(params, inputs):
    return model.apply(params, inputs)

  @jax.jit
  def train_step(params, opt_state, inputs, targets):
    def loss(p):
      return jnp.mean((model.apply(p, inputs) - targets) ** 2)
    value, grads = jax.value_and_grad(loss)(params)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, value

  runs = {"forward": (forward_step, (params, inputs)),
          "train": (train_step, (params, opt_state, inputs, targets))}
  result = {"device": jax.devices()[0].device_kind,
            "platform": jax.devices()[0].platform}
  for name, (fn, args) in runs.items():
    start = time.perf_counter()
    compiled = fn.lower(*args).compile()
    result[f"{name}_compile_s"] = time.perf_counter() - start
    memory = compiled.memory_analysis()
    if memory is not None:
      result[f"{name}_xla_temp_bytes"] = memory.temp_size_in_bytes
    for _ in range(config["warmup"]):
      jax.block_until_ready(compiled(*args))
    if config.get("hlo_dir"):
      path = pathlib.Path(config["hlo_dir"]) / (
          f"{name}-N{config['memory_size']}-{config['link']}-"
          f"{config['backend']}.hlo")
      path.write_text(compiled.as_text())
    reset_peak_rss()
    base_bytes = rss_bytes()
    times = []
    for _ in range(config["steps"]):
      start = time.perf_counter()
      jax.block_until_ready(compiled(*args))
      times.append(time.perf_counter() - start)
    seconds = statistics.median(times)
    result[f"{name}_seconds"] = seconds
    result[f"{name}_seq_steps_per_s"] = batch * steps_t / seconds
    if result["platform"] == "cpu":
      result[f"{name}_peak_bytes"] = peak_rss_bytes()
      result[f"{name}_base_bytes"] = base_bytes
    else:
      stats = jax.devices()[0].memory_stats() or {}
      result[f"{name}_peak_bytes"] = stats.get("peak_bytes_in_use")
  return result


REPO = pathlib.Path(__file__).resolve().parents[1]
DEFAULT_PEER_SOURCE = REPO.parent / "shared" / "peers" / "pytorch-dnc"


def with_hugepages(tunables: Optional[str]) -> str:
  """``GLIBC_TUNABLES`` with :data:`HUGEPAGE_TUNABLE` added to ``tunables``."""
  kept = [t for t in (tunables or "").split(":")
          if t and not t.startswith("glibc.malloc.hugetlb=")]
  return ":".join(kept + [HUGEPAGE_TUNABLE])


def run_json(command: List[str], timeout: float) -> Dict:
  """Runs a timer in its own process; its last stdout line is the JSON."""
  try:
    done = subprocess.run(command, capture_output=True, text=True,
                          timeout=timeout, cwd=REPO)
  except subprocess.TimeoutExpired:
    return {"error": f"timed out after {timeout:.0f} s"}
  if done.returncode != 0:
    tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
    return {"error": f"exit {done.returncode}: " + " | ".join(tail)}
  return json.loads(done.stdout.strip().splitlines()[-1])


def run_in_subprocess(config: Dict, timeout: float) -> Dict:
  return run_json([sys.executable, "-m", "benchmarks.speed", "--single",
                   json.dumps(config)], timeout)


def flops_per_seq_step(config: Dict) -> Dict[str, float]:
  """Multiply-adds x 2 of one sequence-step, forward and training, by formula.

  Counts the dense products that dominate (LSTM gates, interface and output
  layers, content addressing, erase/write, reads, and the link's update and
  directional reads: ``O(N^2)`` dense, ``O(N K)`` sparse); element-wise
  squashes and the allocation sort are left out, so this is a lower bound.
  A training step is counted as three forward passes (the usual estimate:
  the backward pass costs about twice the forward).
  """
  n, w, r = config["memory_size"], config["word_size"], config["num_reads"]
  h, x = config["hidden_size"], config["inputs"]
  interface = r * w + 3 * w + 5 * r + 3  # one write head, with links
  controller = 2 * (x + r * w + h) * 4 * h
  layers = 2 * h * interface + 2 * (h + r * w) * x
  content = 2 * n * w * (r + 1) + 2 * n * w  # keys x memory, norms
  write = 4 * n * w  # erase and add
  reads = 2 * r * n * w
  if config.get("link_sparsity"):
    k = config["link_sparsity"]
    link = 4 * n * k + 2 * 2 * r * n * k
  else:
    link = 4 * n * n + 2 * 2 * r * n * n
  forward = controller + layers + content + write + reads + link
  return {"forward": float(forward), "train": 3.0 * forward}


def peak_flops(seconds: float = 2.0) -> float:
  """FLOP/s of a float32 1024 x 1024 matmul under jax on this machine.

  The machine's attainable peak for the dtype and library the DNC uses (all
  cores, the median of repeated products), measured in the same run as the
  timings so a shared machine's load affects both alike.
  """
  import jax
  import jax.numpy as jnp

  size = 1024
  a = jax.random.normal(jax.random.PRNGKey(0), (size, size), jnp.float32)
  product = jax.jit(lambda a: a @ a)
  jax.block_until_ready(product(a))
  times = []
  deadline = time.perf_counter() + seconds
  while time.perf_counter() < deadline or len(times) < 5:
    start = time.perf_counter()
    jax.block_until_ready(product(a))
    times.append(time.perf_counter() - start)
  return 2.0 * size ** 3 / statistics.median(times)


def peer_python(venv: pathlib.Path) -> pathlib.Path:
  """The peer environment's interpreter, created on first use."""
  python = venv / "bin" / "python"
  ready = venv / ".ready"
  if ready.exists():
    return python
  print(f"creating the peers' environment in {venv} (torch, dnc) ...",
        file=sys.stderr)
  subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
  pip = [str(python), "-m", "pip", "install", "--quiet"]
  subprocess.run(pip + PEER_REQUIREMENTS, check=True)
  # dnc declares a dependency on 'flann', needed only by its sparse
  # variants; the DNC itself runs on torch and numpy.
  subprocess.run(pip + ["--no-deps", PEER_PACKAGE], check=True)
  ready.write_text("ok\n")
  return python


def run_peer(python: pathlib.Path, config: Dict, device: str,
             timeout: float, source: Optional[pathlib.Path] = None) -> Dict:
  """Times one peer: the installed ``dnc`` or, with ``source``, its folder."""
  extra = [f"--source={source}"] if source else []
  return run_json([str(python), "-m", "benchmarks.peers.dnc_pytorch",
                   f"--device={device}", *extra] + [
      f"--{k.replace('_', '-')}={config[k]}" for k in
      ("memory_size", "word_size", "num_reads", "hidden_size", "batch_size",
       "time", "inputs", "steps", "warmup")], timeout)


def _rate(value: Optional[float]) -> str:
  return "-" if value is None else f"{value:,.0f}"


def _gib(value: Optional[float]) -> str:
  return "-" if value is None else f"{value / GIB:.2f}"


def set_ratios(rows: List[Dict]):
  """Each row's training speed over the fastest peer's at its ``N``.

  The reference is the best training figure of any peer timed in the run
  at that memory size (before or after our rows), so a peer slowed by a
  busy moment does not flatter us.
  """
  best: Dict[int, float] = {}
  for row in rows:
    rate = row["result"].get("train_seq_steps_per_s")
    if row.get("peer") and rate:
      size = row["config"]["memory_size"]
      best[size] = max(best.get(size, 0.0), rate)
  for row in rows:
    rate = row["result"].get("train_seq_steps_per_s")
    reference = best.get(row["config"]["memory_size"])
    row["ratio"] = rate / reference if rate and reference else None


def _flops_cells(row: Dict) -> str:
  flops, peak = row.get("flops"), row.get("peak_flops")
  rate = row["result"].get("train_seq_steps_per_s")
  if not flops:
    return " - | - |"
  used = (f"{100 * flops['train'] * rate / peak:.1f}%"
          if rate and peak else "-")
  return f" {flops['train'] / 1e6:,.1f} | {used} |"


def markdown(rows: List[Dict], flops: bool = False) -> str:
  extra_head = (" train MFLOP / seq-step | of matmul peak |" if flops
                else "")
  lines = ["| implementation | N | link | B x T | forward seq-steps/s | "
           "train seq-steps/s | train / best peer | peak GiB (train) | "
           "of which before the step | compile s (train) |" + extra_head,
           "|---|---|---|---|---|---|---|---|---|---|" +
           ("---|---|" if flops else "")]
  for row in rows:
    r, c = row["result"], row["config"]
    if "error" in r:
      lines.append(f"| {row['name']} | {c['memory_size']} | {c['link']} | "
                   f"{c['batch_size']} x {c['time']} | {r['error']} "
                   "| | | | | |" + (" | |" if flops else ""))
      continue
    ratio = row.get("ratio")
    lines.append(
        f"| {row['name']} | {c['memory_size']} | {c['link']} | "
        f"{c['batch_size']} x {c['time']} | "
        f"{_rate(r.get('forward_seq_steps_per_s'))} | "
        f"{_rate(r.get('train_seq_steps_per_s'))} | "
        f"{'-' if ratio is None else f'{ratio:.2f}x'} | "
        f"{_gib(r.get('train_peak_bytes'))} | "
        f"{_gib(r.get('train_base_bytes'))} | "
        f"{r.get('train_compile_s', float('nan')):.1f} |" +
        (_flops_cells(row) if flops else ""))
  return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
  parser = argparse.ArgumentParser(
      description=__doc__.split("\n\n")[0],
      formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--single", help=argparse.SUPPRESS)
  parser.add_argument("--peak-flops", action="store_true",
                      help=argparse.SUPPRESS)
  parser.add_argument("--memory-sizes", default="256,1024,4096,16384,65536")
  parser.add_argument("--links", default="dense,sparse",
                      help="dense and/or sparse (dense is skipped above "
                      "--max-dense-size)")
  parser.add_argument("--sparsity", type=int, default=8, help="K")
  parser.add_argument("--max-dense-size", type=int, default=4096)
  parser.add_argument("--batch-size", type=int, default=16)
  parser.add_argument("--time", type=int, default=64)
  parser.add_argument("--word-size", type=int, default=64)
  parser.add_argument("--num-reads", type=int, default=4)
  parser.add_argument("--hidden-size", type=int, default=256)
  parser.add_argument("--inputs", type=int, default=8)
  parser.add_argument("--steps", type=int, default=10)
  parser.add_argument("--warmup", type=int, default=2)
  parser.add_argument("--backends", default="auto",
                      help="memory backends to time: auto, xla, fused, "
                      "pallas (auto: the fused kernel on CPU, XLA on GPU; "
                      "pallas: the dense link step as Pallas kernels)")
  parser.add_argument("--scan-unrolls", default="1",
                      help="steps per scan iteration to time, e.g. 1,8")
  parser.add_argument("--remat-chunk", default="auto",
                      help="'auto' (none up to N=256, else 8), 'none' or C")
  parser.add_argument("--peers", action="store_true",
                      help="also time the PyTorch peers, before and after "
                      "our rows (see --peer-order): pytorch-dnc 2.0 from "
                      "--peer-source and the PyPI dnc 1.1.0")
  parser.add_argument("--peer-order", default="around",
                      choices=("around", "after"),
                      help="time the peers before and after our rows "
                      "(around: drift shows as a before/after gap) or only "
                      "after them (a run cut by a deadline keeps ours)")
  parser.add_argument("--peer-source", default=str(DEFAULT_PEER_SOURCE),
                      help="folder holding pytorch-dnc's dnc/ package "
                      "(default: ../shared/peers/pytorch-dnc); 'none' to "
                      "time only the PyPI release")
  parser.add_argument("--flops", action="store_true",
                      help="add FLOPs per sequence-step (by formula) and "
                      "the fraction of this machine's matmul peak")
  parser.add_argument("--peer-max-size", type=int, default=1024,
                      help="run the peer only up to this N (it keeps the "
                      "N x N link of every step)")
  parser.add_argument("--peer-venv", default=None,
                      help="where to create the peers' environment "
                      "(default ~/.cache/dnc_jax/peers-venv)")
  parser.add_argument("--peer-python", default=None,
                      help="run the peer with this interpreter (which has "
                      "torch and dnc) instead of creating an environment")
  parser.add_argument("--peer-device", default="auto",
                      choices=("auto", "cpu", "cuda"),
                      help="where the peer runs (auto: cuda where its torch "
                      "sees one)")
  parser.add_argument("--timeout", type=float, default=1800,
                      help="seconds per configuration")
  parser.add_argument("--json", default=None, help="write the results here")
  parser.add_argument("--hugepages", action="store_true",
                      help="run every timed process, ours and the peers', "
                      "with GLIBC_TUNABLES=glibc.malloc.hugetlb=1 (glibc "
                      ">= 2.35; transparent huge pages 'madvise' or "
                      "'always'): the step's large buffers are then faulted "
                      "in 2 MiB pages instead of 4 KiB ones")
  parser.add_argument("--hlo-dir", default=None,
                      help="also write each compiled step's optimised HLO "
                      "here (to see the copies around the memory step)")
  args = parser.parse_args(argv)

  if args.single:
    print(json.dumps(measure(json.loads(args.single))))
    return 0
  if args.peak_flops:
    print(json.dumps({"peak_flops": peak_flops()}))
    return 0

  if args.hugepages:  # inherited by every timer process, peers included
    os.environ["GLIBC_TUNABLES"] = with_hugepages(
        os.environ.get("GLIBC_TUNABLES"))
  hlo_dir = None
  if args.hlo_dir:  # absolute: the timers run from the repository root
    hlo_dir = pathlib.Path(args.hlo_dir).resolve()
    hlo_dir.mkdir(parents=True, exist_ok=True)
  rows = []
  peer = None
  if args.peers and args.peer_python:
    peer = pathlib.Path(args.peer_python)
  elif args.peers:
    venv = pathlib.Path(args.peer_venv or pathlib.Path.home() / ".cache" /
                        "dnc_jax" / "peers-venv")
    peer = peer_python(venv)
  peer_sources: List[Optional[pathlib.Path]] = [None]
  if args.peers and args.peer_source != "none":
    source = pathlib.Path(args.peer_source).resolve()
    if not (source / "dnc" / "__init__.py").exists():
      parser.error(f"--peer-source {args.peer_source}: no dnc/ package "
                   "there ('none' times only the PyPI release)")
    peer_sources = [source, None]
  links = args.links.split(",")
  for link in links:
    if link not in ("dense", "sparse"):
      parser.error(f"--links takes dense and sparse, got {link!r}")
  peak = None
  if args.flops:
    peak = run_json([sys.executable, "-m", "benchmarks.speed",
                     "--peak-flops"], args.timeout).get("peak_flops")
    print(f"matmul peak (float32 1024^3, jax, all cores): "
          f"{peak / 1e9:,.1f} GFLOP/s" if peak else "matmul peak: failed",
          flush=True)

  def add(row):
    """Prints and saves each row when it is done: a cut run keeps it."""
    if args.flops:
      row["flops"] = flops_per_seq_step(row["config"])
      row["peak_flops"] = peak
    rows.append(row)
    set_ratios(rows)
    print(markdown([row], flops=args.flops).split("\n", 2)[-1], flush=True)
    if args.json:
      pathlib.Path(args.json).write_text(json.dumps(rows, indent=2))

  for size in [int(n) for n in args.memory_sizes.split(",")]:
    if args.remat_chunk == "auto":
      remat = None if size <= 256 else 8
    else:
      remat = None if args.remat_chunk == "none" else int(args.remat_chunk)
    common = dict(memory_size=size, batch_size=args.batch_size,
                  time=args.time, word_size=args.word_size,
                  num_reads=args.num_reads, hidden_size=args.hidden_size,
                  inputs=args.inputs, steps=args.steps, warmup=args.warmup,
                  remat_chunk=remat, hlo_dir=hlo_dir and str(hlo_dir),
                  hugepages=args.hugepages)
    peer_config = dict(common, link="dense", link_sparsity=None)

    def time_peers(when: str):
      """The peers (exact dense link): the reference for both our links."""
      if peer is None or size > args.peer_max_size:
        return
      for source in peer_sources:
        result = run_peer(peer, peer_config, args.peer_device, args.timeout,
                          source)
        add({"name": f"{result.get('implementation', 'dnc (PyTorch)')}, "
                     f"{when}",
             "config": peer_config, "result": result, "peer": True})

    if args.peer_order == "around":
      time_peers("before")
    for link in links:
      if link == "dense" and size > args.max_dense_size:
        continue
      base = dict(common, link=link,
                  link_sparsity=None if link == "dense" else args.sparsity)
      for backend in args.backends.split(","):
        for scan_unroll in [int(u) for u in args.scan_unrolls.split(",")]:
          config = dict(base, backend=backend, scan_unroll=scan_unroll)
          result = run_in_subprocess(config, args.timeout)
          notes = (f", remat {remat}" if remat else "") + (
              f", unroll {scan_unroll}" if scan_unroll > 1 else "") + (
              ", huge pages" if args.hugepages else "")
          add({"name": f"dnc_jax ({backend}{notes})", "config": config,
               "result": result})
    time_peers("after")
  print()
  print(markdown(rows, flops=args.flops))
  if args.json:
    pathlib.Path(args.json).write_text(json.dumps(rows, indent=2))
  return 0


if __name__ == "__main__":
  sys.exit(main())
