"""``dnc-babi-train``: train a DNC (or the LSTM baseline) on bAbI, jointly.

Example::

  dnc-babi-train --data-dir path/to/tasks_1-20_v1-2/en-10k --out runs/babi

Presets (``--preset``) are the paper's Extended Data Table 2 settings:
``dnc1`` (LSTM 256, memory 256 x 64, 4 read heads), ``dnc2`` (256 x 32, 8
read heads), ``lstm`` (the LSTM-only baseline, 512 units); RMSProp 1e-4
with momentum 0.9 and controller gradients clipped to +-10. Validation
(about 10% of each task's stories) picks the best parameters and stops
early; ``dnc-babi-eval`` prints the per-task table.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import pathlib
import sys
import time
from typing import Any, Dict, List, Optional

import jax
import numpy as np

from dnc_jax import DNCConfig
from experiments import babi_data, babi_task
from experiments.checkpoints import CheckpointError
from experiments.loop import LoopConfig, OptimizerConfig, train
from experiments.models import babi_model

PRESETS: Dict[str, Dict[str, Any]] = {
    "dnc1": {"kind": "dnc",
             "model": dict(controller="lstm", hidden_size=256,
                           memory_size=256, word_size=64, num_reads=4,
                           num_writes=1, clip_value=20.0,
                           controller_grad_clip=10.0)},
    "dnc2": {"kind": "dnc",
             "model": dict(controller="lstm", hidden_size=256,
                           memory_size=256, word_size=32, num_reads=8,
                           num_writes=1, clip_value=20.0,
                           controller_grad_clip=10.0)},
    "lstm": {"kind": "lstm", "model": dict(hidden_size=512)},
}


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog="dnc-babi-train", description=__doc__.split("\n\n")[0],
      formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--data-dir", required=True,
                      help="folder with qaN_*_train.txt (and _test.txt)")
  parser.add_argument("--preset", default="dnc1", choices=sorted(PRESETS))
  parser.add_argument("--out", default=None,
                      help="run folder (default runs/babi-<preset>)")
  parser.add_argument("--resume", action="store_true")
  parser.add_argument("--tasks", default=None,
                      help="comma-separated task numbers (default: all)")
  parser.add_argument("--steps", type=int, default=500_000)
  parser.add_argument("--batch-size", type=int, default=16)
  parser.add_argument("--learning-rate", type=float, default=1e-4)
  parser.add_argument("--momentum", type=float, default=0.9)
  parser.add_argument("--max-grad-norm", type=float, default=50.0)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--valid-fraction", type=float, default=0.1)
  parser.add_argument("--eval-every", type=int, default=2000)
  parser.add_argument("--eval-stories", type=int, default=200,
                      help="validation stories per task at each evaluation "
                      "(0: all)")
  parser.add_argument("--checkpoint-every", type=int, default=500)
  parser.add_argument("--log-every", type=int, default=50)
  parser.add_argument("--patience", type=int, default=20,
                      help="evaluations without a better validation error "
                      "before stopping")
  parser.add_argument("--remat-chunk", type=int, default=None,
                      help="recompute chunks of this many steps in the "
                      "backward pass (less memory)")
  for flag, help_text in [("hidden-size", "controller units"),
                          ("memory-size", "memory slots N"),
                          ("word-size", "word size W"),
                          ("num-reads", "read heads R")]:
    parser.add_argument(f"--{flag}", type=int, default=None,
                        help=f"override the preset's {help_text}")
  parser.add_argument("--data-parallel", action="store_true",
                      help="split each batch over all local devices")
  parser.add_argument("--no-progress", action="store_true")
  return parser


def model_config(preset: str, vocab_size: int, **overrides) -> DNCConfig:
  """The preset's model for ``vocab_size`` words; ``overrides`` not None win."""
  settings = dict(PRESETS[preset]["model"])
  settings.update({k: v for k, v in overrides.items() if v is not None})
  if PRESETS[preset]["kind"] == "lstm":
    return DNCConfig(output_size=vocab_size, input_size=vocab_size,
                     hidden_size=settings["hidden_size"])
  return DNCConfig(output_size=vocab_size, input_size=vocab_size, **settings)


def validation_subset(stories, per_task: int, seed: int):
  """Up to ``per_task`` validation stories of each task (fixed choice)."""
  if per_task <= 0:
    return list(stories)
  chosen = []
  for task in sorted({s.task for s in stories}):
    of_task = [s for s in stories if s.task == task]
    rng = np.random.default_rng([seed, task, 7])
    keep = sorted(rng.permutation(len(of_task))[:per_task].tolist())
    chosen += [of_task[i] for i in keep]
  return chosen


def make_predict(apply_fn):
  @jax.jit
  def predict(params, ids):
    return jax.numpy.argmax(apply_fn(params, ids), -1)
  return predict


def main(argv: Optional[List[str]] = None) -> int:
  parser = build_parser()
  args = parser.parse_args(argv)
  try:
    tasks = ([int(t) for t in args.tasks.split(",")] if args.tasks
             else None)
    splits = babi_data.load_splits(args.data_dir, args.valid_fraction,
                                   args.seed, tasks)
    vocab = babi_data.Vocabulary.build(splits["train"])
    task = babi_task.BabiTask(splits["train"], vocab)
    config = model_config(args.preset, len(vocab),
                          hidden_size=args.hidden_size,
                          memory_size=args.memory_size,
                          word_size=args.word_size, num_reads=args.num_reads)
    kind = PRESETS[args.preset]["kind"]
    model = babi_model(kind, config, args.remat_chunk)
    apply_fn = babi_task.one_hot_inputs(model.apply, len(vocab))
    init_fn = babi_task.one_hot_inputs(model.init, len(vocab))
    loop = LoopConfig(steps=args.steps, batch_size=args.batch_size,
                      seed=args.seed, log_every=args.log_every,
                      eval_every=args.eval_every,
                      checkpoint_every=args.checkpoint_every,
                      select_metric="valid/mean_error",
                      patience=args.patience,
                      data_parallel=args.data_parallel)
    optimizer = OptimizerConfig(name="rmsprop",
                                learning_rate=args.learning_rate,
                                momentum=args.momentum,
                                max_grad_norm=args.max_grad_norm)
  except (ValueError, KeyError, FileNotFoundError,
          babi_data.BabiFormatError) as error:
    parser.exit(2, f"dnc-babi-train: error: {error}\n")

  out = pathlib.Path(args.out or f"runs/babi-{args.preset}")
  out.mkdir(parents=True, exist_ok=True)
  vocab.save(out / "vocab.json")
  valid = validation_subset(splits["valid"], args.eval_stories, args.seed)
  predict = make_predict(apply_fn)

  def evaluate(params) -> Dict[str, float]:
    counts = babi_task.evaluate(lambda ids: predict(params, ids), valid,
                                vocab)
    table = babi_task.error_table(counts)
    results = {"valid/mean_error": table["mean_error"],
               "valid/failed_tasks": float(table["failed_tasks"])}
    results.update({f"valid/task{t}": e for t, e in
                    table["per_task"].items()})
    return results

  record = {
      "kind": kind, "preset": args.preset,
      "model": dataclasses.asdict(config),
      "optimizer": dataclasses.asdict(optimizer),
      "loop": dataclasses.asdict(loop), "remat_chunk": args.remat_chunk,
      "data": {"tasks": tasks, "valid_fraction": args.valid_fraction,
               "vocab_sha256": hashlib.sha256(
                   "\n".join(vocab.words).encode()).hexdigest(),
               "eval_stories": args.eval_stories},
  }
  started = time.time()
  try:
    summary = train(init_fn=init_fn, apply_fn=apply_fn, task=task,
                    optimizer_config=optimizer, loop_config=loop,
                    out_dir=out, run_record=record, evaluate=evaluate,
                    resume=args.resume, progress=not args.no_progress)
  except (ValueError, CheckpointError) as error:
    parser.exit(2, f"dnc-babi-train: error: {error}\n")
  print(json.dumps({"out": str(out),
                    "wall_seconds": round(time.time() - started, 1),
                    **summary}, indent=2))
  return 130 if summary["stopped"] == "interrupted" else 0


if __name__ == "__main__":
  sys.exit(main())
