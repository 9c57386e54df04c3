"""``dnc-train``: train a DNC on a bit task (copy, repeat copy, allocation).

Examples::

  dnc-train --task repeat_copy                      # the README's main job
  dnc-train --task repeat_copy --preset original    # the original release
  dnc-train --task copy --preset sparse --steps 5000
  dnc-train --task repeat_copy --out runs/rc --resume

A preset fixes every setting; any flag given overrides it. The run folder
(``--out``) receives checkpoints, ``metrics.jsonl`` and ``summary.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from typing import Any, Dict, List, Optional

import jax
import numpy as np

from dnc_jax import DNCConfig
from experiments import bit_tasks, presets
from experiments.checkpoints import CheckpointError
from experiments.loop import LoopConfig, OptimizerConfig, train
from experiments.models import unrolled_dnc

EVAL_SEED = 2 ** 31 - 1  # Keeps evaluation batches apart from training's.

# flag -> (section, field); each section is a dataclass the flags fill in.
_FLAGS = {
    "num_bits": ("task", int, "bits per pattern vector"),
    "min_length": ("task", int, "shortest pattern"),
    "max_length": ("task", int, "longest pattern"),
    "min_repeats": ("task", int, "repeat copy: fewest repeats"),
    "max_repeats": ("task", int, "repeat copy: most repeats"),
    "num_sequences": ("task", int, "allocation copy: patterns per episode"),
    "controller": ("model", str, "lstm, deep_lstm or feedforward"),
    "hidden_size": ("model", int, "units per controller layer"),
    "num_layers": ("model", int, "controller layers"),
    "memory_size": ("model", int, "memory slots N"),
    "word_size": ("model", int, "word size W"),
    "num_reads": ("model", int, "read heads R"),
    "num_writes": ("model", int, "write heads H"),
    "clip_value": ("model", float, "clip controller and output (0: off)"),
    "strength_squash": ("model", str, "oneplus or softplus"),
    "link_sparsity": ("model", int, "sparse link K (0: dense link)"),
    "optimizer": ("optimizer", str, "rmsprop or adam"),
    "learning_rate": ("optimizer", float, "learning rate"),
    "max_grad_norm": ("optimizer", float, "global gradient-norm clip"),
    "momentum": ("optimizer", float, "RMSProp momentum"),
    "steps": ("loop", int, "total training steps"),
    "batch_size": ("loop", int, "sequences per step"),
    "seed": ("loop", int, "seed of parameters and data"),
    "log_every": ("loop", int, "steps between metric lines"),
    "eval_every": ("loop", int, "steps between evaluations"),
    "checkpoint_every": ("loop", int, "steps between checkpoints"),
}
_FIELD_NAMES = {"optimizer": "name"}  # flag name -> field name, where they differ


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog="dnc-train", description=__doc__.split("\n\n")[0],
      formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--task", required=True, choices=sorted(bit_tasks.TASKS))
  parser.add_argument("--preset", default="default",
                      help="settings to start from (see experiments/presets.py)")
  groups = {name: parser.add_argument_group(name)
            for name in ("task", "model", "optimizer", "loop")}
  for flag, (section, kind, help_text) in _FLAGS.items():
    groups[section].add_argument("--" + flag.replace("_", "-"), type=kind,
                                 default=None, help=help_text)
  groups["model"].add_argument("--no-temporal-links", action="store_true",
                               help="drop the link matrix (content reads only)")
  groups["loop"].add_argument(
      "--target-bit-errors", type=float, default=None,
      help="stop once validation bit errors per sequence fall below this")
  parser.add_argument("--eval-batch-size", type=int, default=100,
                      help="sequences per evaluation batch (the paper: 100)")
  parser.add_argument("--out", default=None,
                      help="run folder (default runs/<task>-<preset>)")
  parser.add_argument("--resume", action="store_true",
                      help="continue the run in --out from its checkpoint")
  parser.add_argument("--no-progress", action="store_true",
                      help="no progress bar")
  return parser


def settings_from_args(args: argparse.Namespace) -> Dict[str, Dict[str, Any]]:
  """The preset with the flags given applied: plain, JSON-able dicts."""
  settings = presets.preset(args.task, args.preset)
  task_fields = {f.name for f in dataclasses.fields(bit_tasks.TASKS[args.task])}
  for flag, (section, _, _) in _FLAGS.items():
    value = getattr(args, flag)
    if value is None:
      continue
    if section == "task" and flag not in task_fields:
      raise ValueError(f"--{flag.replace('_', '-')} does not apply to task "
                       f"{args.task!r}")
    if flag == "link_sparsity" and value == 0:
      value = None
    settings[section][_FIELD_NAMES.get(flag, flag)] = value
  if args.no_temporal_links:
    settings["model"]["use_temporal_links"] = False
  if args.target_bit_errors is not None:
    settings["loop"]["stop_below"] = ["valid/bit_errors",
                                      args.target_bit_errors]
  if "stop_below" in settings["loop"] and settings["loop"]["stop_below"]:
    settings["loop"]["stop_below"] = list(settings["loop"]["stop_below"])
  if args.eval_batch_size < 1:
    raise ValueError(f"--eval-batch-size must be >= 1, got "
                     f"{args.eval_batch_size}")
  settings["eval_batch_size"] = args.eval_batch_size
  return settings


def make_evaluate(task, apply_fn, seed: int, batch_size: int):
  """Validation and longer-than-trained batches, fixed for the whole run."""
  batches = {
      "valid": task.sample(np.random.default_rng([seed, EVAL_SEED, 0]),
                           batch_size),
      "longer": task.longer().sample(
          np.random.default_rng([seed, EVAL_SEED, 1]), batch_size),
  }

  @jax.jit
  def metrics(params, batch):
    logits = apply_fn(params, batch.inputs)
    return dict(task.metrics(logits, batch), loss=task.loss(logits, batch))

  def evaluate(params) -> Dict[str, float]:
    results = {}
    for name, batch in batches.items():
      for key, value in metrics(params, batch).items():
        results[f"{name}/{key}"] = float(value)
    return results

  return evaluate


def run(settings: Dict[str, Any], task_name: str, out_dir, *,
        resume: bool = False, progress: bool = True,
        stop_after: Optional[int] = None) -> Dict[str, Any]:
  """Trains with ``settings`` (as :func:`settings_from_args` builds them)."""
  task = bit_tasks.TASKS[task_name](**settings["task"])
  model_config = DNCConfig(output_size=task.output_size,
                           input_size=task.input_size, **settings["model"])
  loop_settings = dict(settings["loop"])
  if loop_settings.get("stop_below"):
    loop_settings["stop_below"] = tuple(loop_settings["stop_below"])
  loop_config = LoopConfig(**loop_settings)
  optimizer_config = OptimizerConfig(**settings["optimizer"])
  model = unrolled_dnc(model_config)
  evaluate = make_evaluate(task, model.apply, loop_config.seed,
                           settings["eval_batch_size"])
  record = dict(settings, task_name=task_name,
                task=dataclasses.asdict(task),
                model=dataclasses.asdict(model_config))
  return train(init_fn=model.init, apply_fn=model.apply, task=task,
               optimizer_config=optimizer_config, loop_config=loop_config,
               out_dir=out_dir, run_record=record, evaluate=evaluate,
               resume=resume, progress=progress, stop_after=stop_after)


def main(argv: Optional[List[str]] = None) -> int:
  parser = build_parser()
  args = parser.parse_args(argv)
  try:
    settings = settings_from_args(args)
    out_dir = args.out or f"runs/{args.task}-{args.preset}"
    started = time.time()
    summary = run(settings, args.task, out_dir, resume=args.resume,
                  progress=not args.no_progress)
  except (ValueError, TypeError, CheckpointError) as error:
    parser.exit(2, f"dnc-train: error: {error}\n")
  elapsed = time.time() - started
  print(json.dumps({"out": str(out_dir), "wall_seconds": round(elapsed, 1),
                    **summary}, indent=2))
  return 130 if summary["stopped"] == "interrupted" else 0


if __name__ == "__main__":
  sys.exit(main())
