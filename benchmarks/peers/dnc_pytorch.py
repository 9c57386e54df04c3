"""Times the PyPI ``dnc`` package (a PyTorch DNC) on one configuration.

Run by ``benchmarks.speed --peers`` (as ``python -m
benchmarks.peers.dnc_pytorch`` from the repository root) inside a separate
virtual environment that has ``torch`` and ``dnc`` (no jax); prints one JSON
line. It mirrors ``benchmarks/speed.py``'s measurement: median seconds of
``--steps`` steps after ``--warmup``, peak memory of the timed steps only
(resident memory on CPU; with ``--device cuda``, the GPU memory torch
allocated).
"""

import argparse
import json
import statistics
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
  args = parser.parse_args()

  import torch
  from dnc import DNC

  if args.device == "auto":
    args.device = "cuda" if torch.cuda.is_available() else "cpu"
  on_gpu = args.device == "cuda"
  torch.manual_seed(0)
  model = DNC(input_size=args.inputs, hidden_size=args.hidden_size,
              rnn_type="lstm", num_layers=1, num_hidden_layers=1,
              nr_cells=args.memory_size, cell_size=args.word_size,
              read_heads=args.num_reads, batch_first=True, gpu_id=0 if on_gpu else -1,
              clip=20)
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
    loss = torch.mean((outputs - targets) ** 2)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 50.0)
    optimizer.step()

  from importlib.metadata import version
  result = {"implementation": f"dnc {version('dnc')} (PyTorch "
                              f"{torch.__version__})",
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
