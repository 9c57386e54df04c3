"""Times a PyTorch DNC (the ``dnc`` package) on one configuration.

Run by ``benchmarks.speed --peers`` (as ``python -m
benchmarks.peers.dnc_pytorch`` from the repository root) inside a separate
virtual environment that has ``torch`` (no jax); prints one JSON line. The
``dnc`` it imports is the PyPI release installed there (1.1.0) or, with
``--source DIR``, the package in ``DIR`` (pytorch-dnc 2.0's source, whose
``DNC()`` takes ``device=`` instead of 1.1.0's ``gpu_id=``). It mirrors ``benchmarks/speed.py``'s measurement: median seconds of
``--steps`` steps after ``--warmup``, peak memory of the timed steps only
(resident memory on CPU; with ``--device cuda``, the GPU memory torch
allocated).
"""

import argparse
import inspect
import json
import pathlib
import statistics
import sys
import time

from benchmarks.rss import peak_rss_bytes, reset_peak_rss, rss_bytes


def main():
  parser = argparse.ArgumentParser()
  for name, default in [("memory-size", 256), ("word-size", 64),
                        ("num-reads", 4), ("hidden-size", 256),
                        ("batch-size", 16), ("time", 64), ("inputs", 8),
                        ("steps", 10), ("warmup", 2)]:
    parser.add_argument(f"--{name}", type=int, default=default)
  parser.add_argument("--device", choices=("auto", "cpu", "cuda"),
                      default="auto", help="auto: cuda where torch sees one")
  parser.add_argument("--source", default=None,
                      help="import dnc from this folder instead of the "
                      "installed package")
  args = parser.parse_args()

  if args.source:
    sys.path.insert(0, str(pathlib.Path(args.source).resolve()))
  import torch
  import dnc
  from dnc import DNC

  if args.device == "auto":
    args.device = "cuda" if torch.cuda.is_available() else "cpu"
  on_gpu = args.device == "cuda"
  torch.manual_seed(0)
  # 1.1.0 places the model with gpu_id, 2.0 with device.
  if "gpu_id" in inspect.signature(DNC.__init__).parameters:
    placement = dict(gpu_id=0 if on_gpu else -1)
  else:
    placement = dict(device=torch.device(args.device))
  model = DNC(input_size=args.inputs, hidden_size=args.hidden_size,
              rnn_type="lstm", num_layers=1, num_hidden_layers=1,
              nr_cells=args.memory_size, cell_size=args.word_size,
              read_heads=args.num_reads, batch_first=True, clip=20,
              **placement)
  optimizer = torch.optim.RMSprop(model.parameters(), lr=1e-4, eps=1e-10)
  inputs = torch.randn(args.batch_size, args.time, args.inputs,
                       device=args.device)
  targets = torch.randn(args.batch_size, args.time, args.inputs,
                        device=args.device)

  def finish():
    """Waits for the GPU's queued work, so timings cover it."""
    if on_gpu:
      torch.cuda.synchronize()

  def forward():
    with torch.no_grad():
      model(inputs, (None, None, None), reset_experience=True)

  def train():
    optimizer.zero_grad()
    outputs, _ = model(inputs, (None, None, None), reset_experience=True)
    if outputs.shape[:2] != targets.shape[:2]:
      # pytorch-dnc 2.0 returns [T, B, X] even with batch_first=True.
      outputs = outputs.transpose(0, 1)
    loss = torch.mean((outputs - targets) ** 2)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 50.0)
    optimizer.step()

  if args.source:
    name = f"{pathlib.Path(args.source).name} (source)"
  else:
    from importlib.metadata import version
    name = f"dnc {version('dnc')}"
  result = {"implementation": f"{name} (PyTorch {torch.__version__})",
            "dnc_file": dnc.__file__,
            "threads": torch.get_num_threads()}
  if on_gpu:
    result["device"] = torch.cuda.get_device_name()
  for name, fn in [("forward", forward), ("train", train)]:
    for _ in range(args.warmup):
      fn()
    finish()
    if on_gpu:
      torch.cuda.reset_peak_memory_stats()
    else:
      reset_peak_rss()
      result[f"{name}_base_bytes"] = rss_bytes()
    times = []
    for _ in range(args.steps):
      start = time.perf_counter()
      fn()
      finish()
      times.append(time.perf_counter() - start)
    seconds = statistics.median(times)
    result[f"{name}_seq_steps_per_s"] = args.batch_size * args.time / seconds
    result[f"{name}_peak_bytes"] = (torch.cuda.max_memory_allocated()
                                    if on_gpu else peak_rss_bytes())
  print(json.dumps(result))


if __name__ == "__main__":
  main()
