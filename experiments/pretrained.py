"""Small trained models saved as one ``.npz``: parameters and their config.

The file holds every parameter as ``"<module>/<name>"`` and, as JSON text,
the :class:`~dnc_jax.DNCConfig`, the task settings and (when written by
this module's command) the model's evaluation and where it came from, with
no pickled objects, so it loads with ``allow_pickle=False``.

The notebooks' model is written by::

  python -m experiments.pretrained --task dynamic_allocation_copy \\
      --out notebooks/pretrained/dynamic_allocation_copy.npz

which trains through the one trainer (``dnc-train``'s), exports the run's
best (else latest) parameters, evaluates them on a fixed seeded batch and
stores that evaluation in the file. ``--from-run RUN`` exports a finished
run instead of training; ``--from-npz FILE`` re-evaluates a saved file.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import sys
import tempfile
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from dnc_jax import DNCConfig

_META = "__meta__"
EVAL_BATCH = 100  # Sequences in the evaluation batch (the paper's 100).
EVAL_SEED = 0  # Seeds it: np.random.default_rng(EVAL_SEED).


def save(path, config: DNCConfig, params, task: Dict[str, Any],
         evaluation: Optional[Dict[str, Any]] = None,
         source: Optional[Dict[str, Any]] = None):
  """Writes ``params`` (a Haiku params dict) with ``config`` and ``task``.

  ``evaluation`` (as :func:`evaluate` gives it) and ``source`` (how the
  parameters were made) are stored in the meta when given.
  """
  arrays = {f"{module}/{name}": np.asarray(value)
            for module, values in params.items()
            for name, value in values.items()}
  meta = {"config": dataclasses.asdict(config), "task": task}
  if evaluation is not None:
    meta["evaluation"] = evaluation
  if source is not None:
    meta["source"] = source
  np.savez_compressed(path, **arrays, **{_META: np.array(json.dumps(meta))})


def load_meta(path) -> Dict[str, Any]:
  """The file's meta: ``config``, ``task`` and maybe ``evaluation``."""
  path = pathlib.Path(path)
  with np.load(path, allow_pickle=False) as data:
    if _META not in data.files:
      raise ValueError(f"{path} is not a dnc_jax pretrained file (no "
                       f"{_META} entry)")
    return json.loads(str(data[_META]))


def load(path) -> Tuple[DNCConfig, Dict[str, Dict[str, np.ndarray]],
                        Dict[str, Any]]:
  """``(config, params, task)`` as :func:`save` wrote them."""
  meta = load_meta(path)
  params: Dict[str, Dict[str, np.ndarray]] = {}
  with np.load(pathlib.Path(path), allow_pickle=False) as data:
    for key in data.files:
      if key != _META:
        module, name = key.rsplit("/", 1)
        params.setdefault(module, {})[name] = data[key]
  return DNCConfig(**meta["config"]), params, meta["task"]


def make_task(task_settings: Dict[str, Any]):
  """The bit task a file's ``task`` settings (with ``name``) describe."""
  from experiments.tasks import bit
  settings = dict(task_settings)
  return bit.TASKS[settings.pop("name")](**settings)


def evaluate(config: DNCConfig, params, task, batch_size: int = EVAL_BATCH,
             seed: int = EVAL_SEED) -> Dict[str, Any]:
  """Perfect fraction and bit errors on fixed seeded batches.

  ``perfect``/``bit_errors``: ``batch_size`` sequences of ``task`` drawn
  from ``np.random.default_rng(seed)``; ``longer_*``: the same for
  ``task.longer()``. The notebooks compute the same figures.
  """
  import jax
  from experiments.models import unrolled_dnc
  from experiments.tasks import bit
  apply = jax.jit(unrolled_dnc(config).apply)
  result: Dict[str, Any] = {"batch_size": batch_size, "seed": seed}
  for prefix, variant in (("", task), ("longer_", task.longer())):
    batch = variant.sample(np.random.default_rng(seed), batch_size)
    metrics = bit.bit_metrics(apply(params, batch.inputs), batch)
    result[f"{prefix}perfect"] = float(metrics["perfect"])
    result[f"{prefix}bit_errors"] = float(metrics["bit_errors"])
  return result


def task_settings(task) -> Dict[str, Any]:
  """A task's settings as the file stores them (``name`` first)."""
  return dict(name=task.name, **dataclasses.asdict(task))


def train_run(task_name: str, preset: str, run_dir,
              steps: Optional[int] = None, progress: bool = True):
  """Trains ``preset`` of ``task_name`` into ``run_dir`` (``dnc-train``)."""
  from experiments import cli, tasks
  settings = tasks.preset(task_name, preset)
  if steps is not None:
    loop = settings["loop"]
    loop["steps"] = steps
    for key in ("eval_every", "checkpoint_every", "log_every"):
      if loop.get(key):
        loop[key] = min(loop[key], steps)
  settings.setdefault("eval_batch_size", EVAL_BATCH)
  cli.validate_settings(task_name, settings)
  return cli.run(settings, task_name, run_dir, progress=progress,
                 save_settings={"task_name": task_name, "preset": preset,
                                "settings": settings})


def from_run(run_dir, use_best: bool = True):
  """``(config, params, task, which)`` of a ``dnc-train`` bit-task run."""
  from experiments import cli
  from experiments.loop import OptimizerConfig, load_params
  from experiments.models import model_config, unrolled_dnc
  from experiments.tasks import bit
  run_dir = pathlib.Path(run_dir)
  saved = cli.saved_settings(run_dir)
  if saved is None or saved["task_name"] not in bit.TASKS:
    raise ValueError(f"{run_dir} is not a dnc-train bit-task run")
  settings = saved["settings"]
  if settings.get("kind", "dnc") != "dnc":
    raise ValueError(f"{run_dir} trains a {settings['kind']!r}: only DNC "
                     "runs are exported")
  task = bit.TASKS[saved["task_name"]](**settings["task"])
  config = model_config("dnc", settings["model"], task.input_size,
                        task.output_size)
  params, record, which = load_params(
      run_dir, unrolled_dnc(config).init,
      OptimizerConfig(**settings["optimizer"]),
      task.sample(np.random.default_rng(0), 1).inputs, use_best=use_best)
  params = {m: {n: np.asarray(v) for n, v in vs.items()}
            for m, vs in params.items()}
  return config, params, task, which, record["step"]


def _format(evaluation: Dict[str, Any]) -> str:
  return (f"perfect {evaluation['perfect']:.2f}, bit errors "
          f"{evaluation['bit_errors']:.3f} ({evaluation['batch_size']} "
          f"sequences, seed {evaluation['seed']}); longer: perfect "
          f"{evaluation['longer_perfect']:.2f}, bit errors "
          f"{evaluation['longer_bit_errors']:.3f}")


def main(argv: Optional[List[str]] = None) -> int:
  parser = argparse.ArgumentParser(
      prog="python -m experiments.pretrained",
      description="Trains (or exports) a model and writes it as a "
      "pretrained .npz with its evaluation.")
  parser.add_argument("--task", default="dynamic_allocation_copy")
  parser.add_argument("--preset", default="default")
  parser.add_argument("--out", required=True, help="the .npz to write")
  parser.add_argument("--steps", type=int, default=None,
                      help="training steps (default: the preset's)")
  parser.add_argument("--run", default=None,
                      help="run folder to train into (default: a temporary "
                      "one)")
  parser.add_argument("--from-run", default=None,
                      help="export this finished run instead of training")
  parser.add_argument("--latest", action="store_true",
                      help="export the latest parameters, not the best")
  parser.add_argument("--from-npz", default=None,
                      help="re-evaluate this pretrained file and write it "
                      "to --out with its evaluation")
  parser.add_argument("--eval-batch-size", type=int, default=EVAL_BATCH)
  parser.add_argument("--eval-seed", type=int, default=EVAL_SEED)
  parser.add_argument("--no-progress", action="store_true")
  args = parser.parse_args(argv)
  from experiments.tasks import bit
  if args.task not in bit.TASKS:
    parser.error(f"--task must be a bit task: {sorted(bit.TASKS)}")

  if args.from_npz:
    config, params, settings = load(args.from_npz)
    task = make_task(settings)
    source = load_meta(args.from_npz).get("source", {
        "command": f"dnc-train --task {settings['name']}",
        "note": "trained before this command existed"})
  else:
    run_dir = args.from_run
    if run_dir is None:
      run_dir = args.run or tempfile.mkdtemp(prefix="dnc-pretrained-")
      train_run(args.task, args.preset, run_dir, args.steps,
                progress=not args.no_progress)
    config, params, task, which, step = from_run(run_dir,
                                                 not args.latest)
    if task.name != args.task and args.from_run is None:
      raise AssertionError(task.name)
    print(f"exporting {which} of {run_dir}")
    source = {"task": task.name, "preset": args.preset, "step": step,
              "parameters": which.split()[0]}
  evaluation = evaluate(config, params, task, args.eval_batch_size,
                        args.eval_seed)
  print(f"{task.name}: {_format(evaluation)}")
  out = pathlib.Path(args.out)
  out.parent.mkdir(parents=True, exist_ok=True)
  save(out, config, params, task_settings(task), evaluation, source)
  print(f"wrote {out}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
