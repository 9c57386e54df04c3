"""``dnc-train``: the one trainer's command line, for every task.

Examples::

  dnc-train --task repeat_copy                      # the README's main job
  dnc-train --task repeat_copy --preset original    # the original release
  dnc-train --task copy --preset sparse --steps 5000
  dnc-train --task babi --data-dir path/to/en-10k --preset dnc1
  dnc-train --out runs/rc --resume                  # settings from the run

A preset fixes every setting; any flag given overrides it. The run folder
(``--out``) receives checkpoints, ``metrics.jsonl``, ``settings.json`` and
``summary.json``. ``--resume`` takes the settings saved in the run folder;
flags given override them (each reported in one line).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import pathlib
import sys
import threading
import time
from typing import (Any, Callable, Dict, List, NamedTuple, Optional,
                    Sequence, Tuple)

import jax
import numpy as np

from dnc_jax import DNCConfig
from dnc_jax.ntm import NTMConfig
from experiments import babi_data, distributed, flags as flag_gen, sweep
from experiments import tasks
from experiments.checkpoints import Checkpointer, CheckpointError
from experiments.loop import (CHANGEABLE_ON_RESUME, LoopConfig,
                              OptimizerConfig, make_run_folder, train,
                              TrainingDiverged)
from experiments.models import (Model, babi_model, check_kind, model_config,
                                sequence_model, uses_dropout)
from experiments.tasks import babi, bit
from experiments.tasks import shrdlu as shrdlu_task

EVAL_SEED = 2 ** 31 - 1  # Keeps evaluation batches apart from training's.
SETTINGS_FILE = "settings.json"

_TASK_HELP = {
    "num_bits": "bits per pattern vector", "min_length": "shortest pattern",
    "max_length": "longest pattern",
    "min_repeats": "repeat copy: fewest repeats",
    "max_repeats": "repeat copy: most repeats",
    "num_sequences": "allocation copy: patterns per episode",
    "repeat_norm": "repeat copy: the repeat count is divided by this"}
_OPTIMIZER_HELP = {
    "name": "rmsprop or adam", "learning_rate": "learning rate",
    "max_grad_norm": "global gradient-norm clip",
    "decay": "RMSProp decay", "epsilon": "optimiser epsilon",
    "momentum": "RMSProp momentum"}


def _no_link(value):
  return None if value == 0 else value


def build_parser(prog: str = "dnc-train", task: Optional[str] = None
                 ) -> Tuple[argparse.ArgumentParser, List[flag_gen.Flag]]:
  """The parser and its generated flags; ``task`` fixes the task (aliases)."""
  parser = argparse.ArgumentParser(
      prog=prog, description=__doc__.split("\n\n")[0],
      formatter_class=argparse.RawDescriptionHelpFormatter)
  if task is None:
    parser.add_argument("--task", default=None, choices=sorted(tasks.PRESETS),
                        help="the task (default with --resume: the run's)")
    parser.add_argument("--preset", default=None,
                        help="settings to start from (default: 'default', "
                        "bAbI 'dnc1'; see experiments/tasks/)")
  else:
    parser.set_defaults(task=task)
    parser.add_argument("--preset", default=None,
                        choices=sorted(tasks.PRESETS[task]),
                        help=f"settings to start from (default "
                        f"{tasks.DEFAULT_PRESET.get(task, 'default')})")
  groups = {name: parser.add_argument_group(name)
            for name in ("task", "model", "optimizer", "loop")}
  seen = {"task", "preset", "out", "resume", "no-progress"}
  generated = []
  task_classes = _task_classes(task)
  generated += flag_gen.add_dataclass_flags(
      groups["task"], "task", task_classes, seen=seen,
      convert={"tasks": babi.parse_tasks},
      rename={"validation": "no-validation"},
      helps=dict(_TASK_HELP, validation="bAbI: no validation split, so "
                 "no evaluation, best parameters or early stopping"))
  generated += flag_gen.add_dataclass_flags(
      groups["model"], "model", [DNCConfig, NTMConfig],
      skip=("output_size", "input_size"), seen=seen,
      rename={"use_temporal_links": "no-temporal-links"},
      convert={"link_sparsity": _no_link},
      helps={"link_sparsity": "sparse link K (0: dense link)",
             "use_temporal_links": "drop the link matrix (content reads "
             "only)", "clip_value": "clip controller and output (0: off)",
             "shift_range": "NTM presets: shifts -S..S (0: none)",
             "initial_weighting": "NTM presets: one_hot or zeros",
             "weighting_grad_clip": "NTM presets: clip the gradient into "
             "the previous weightings (docs/ntm.md)"})
  generated += flag_gen.add_dataclass_flags(
      groups["optimizer"], "optimizer", [OptimizerConfig], seen=seen,
      rename={"name": "optimizer"}, helps=_OPTIMIZER_HELP)
  generated += flag_gen.add_dataclass_flags(
      groups["loop"], "loop", [LoopConfig], seen=seen)
  if task not in ("babi", "shrdlu"):
    groups["loop"].add_argument(
        "--target-bit-errors", type=float, default=None,
        help="bit tasks: stop once validation bit errors per sequence fall "
        "below this")
    parser.add_argument("--eval-batch-size", type=int,
                        default=argparse.SUPPRESS,
                        help="bit tasks: sequences per evaluation batch "
                        "(the paper: 100)")
  parser.add_argument("--out", default=None,
                      help="run folder (default runs/<task>-<preset>)")
  parser.add_argument("--resume", action="store_true",
                      help="continue the run in --out from its checkpoint")
  add_allow_change_flag(parser)
  parser.add_argument("--no-progress", action="store_true",
                      help="no progress bar")
  sweep.add_flags(parser)
  return parser, generated


def add_allow_change_flag(parser: argparse.ArgumentParser):
  """``--allow-change FIELD`` (repeatable): see :func:`allowed_changes`."""
  parser.add_argument(
      "--allow-change", action="append", default=[], metavar="FIELD",
      choices=[f.split(".", 1)[1] for f in CHANGEABLE_ON_RESUME],
      help="with --resume: let this learning setting (learning_rate, "
      "max_grad_norm, or Mini-SHRDLU's entropy_cost or lam) differ from the "
      "checkpoint's, given by its own flag "
      "(e.g. --allow-change learning_rate --learning-rate 3e-4); the change "
      "is logged in metrics.jsonl; repeatable")


def allowed_changes(args) -> List[str]:
  """The trainer's ``may_change`` from ``--allow-change``; ValueError
  without ``--resume``."""
  by_name = {f.split(".", 1)[1]: f for f in CHANGEABLE_ON_RESUME}
  fields = [by_name[field] for field in args.allow_change]
  if fields and not args.resume:
    raise ValueError("--allow-change applies to --resume")
  return fields


def _task_classes(task: Optional[str]) -> List[type]:
  """The config dataclasses whose fields are ``task`` flags."""
  own = {"babi": [babi.BabiConfig], "shrdlu": [shrdlu_task.ShrdluConfig]}
  if task in own:
    return own[task]
  if task:
    return list(bit.TASKS.values())
  return (list(bit.TASKS.values()) + [babi.BabiConfig]
          + [shrdlu_task.ShrdluConfig])


# --- Settings: preset or saved run, then the flags given. -----------------

def saved_settings(out: pathlib.Path) -> Optional[Dict[str, Any]]:
  """``{"task_name", "preset", "settings"}`` of a run folder, or ``None``.

  From ``settings.json``, or for runs older than it, rebuilt from the
  latest checkpoint's run record.
  """
  path = out / SETTINGS_FILE
  if path.is_file():
    try:
      return json.loads(path.read_text())
    except (OSError, ValueError) as error:
      raise CheckpointError(f"{path} is unreadable ({error})") from None
  folder = out / "checkpoints"
  if not folder.is_dir():
    return None
  checkpointer = Checkpointer(folder, create=False)
  try:
    if checkpointer.latest_step() is None:
      return None
    record = None
    for step in checkpointer.all_steps()[::-1]:  # Newest intact.
      try:
        record = checkpointer.read_record(step)["run"]
        break
      except CheckpointError:
        continue
  finally:
    checkpointer.close()
  if record is None:
    return None
  return settings_from_record(record)


def settings_from_record(record: Dict[str, Any]) -> Dict[str, Any]:
  """A run record (as checkpoints hold it) back to its settings."""
  model = {k: v for k, v in record["model"].items()
           if k not in ("output_size", "input_size")}
  if "task_name" in record:  # A bit task.
    settings = {"task": record["task"], "model": model,
                "optimizer": record["optimizer"], "loop": record["loop"],
                "eval_batch_size": record.get("eval_batch_size", 100)}
    if "kind" in record:  # Absent: a DNC (runs from before NTM presets).
      settings["kind"] = record["kind"]
    return {"task_name": record["task_name"], "preset": None,
            "settings": settings}
  data = record["data"]
  task = dict(data_dir=None, tasks=data["tasks"],
              valid_fraction=data["valid_fraction"],
              eval_stories=data["eval_stories"],
              remat_chunk=record.get("remat_chunk"),
              validation=data.get("validation", True))
  return {"task_name": "babi", "preset": record.get("preset"),
          "settings": {"kind": record["kind"], "task": task, "model": model,
                       "optimizer": record["optimizer"],
                       "loop": record["loop"]}}


def apply_flags(settings: Dict[str, Any], task_name: str, args,
                generated, report: bool = False) -> Dict[str, Any]:
  """``settings`` with the flags given; ``report``: print each change."""
  task_fields = {f.name for cls in _task_classes(task_name)
                 for f in dataclasses.fields(cls)
                 if task_name not in bit.TASKS or cls is bit.TASKS[task_name]}
  for flag, value in flag_gen.given(args, generated):
    if flag.section == "task" and flag.field not in task_fields:
      raise ValueError(f"--{flag.name} does not apply to task "
                       f"{task_name!r}")
    section = settings.setdefault(flag.section, {})
    if report and section.get(flag.field) not in (None, value):
      print(f"--{flag.name} {value} overrides the run's saved "
            f"{section[flag.field]!r}")
    section[flag.field] = value
  if getattr(args, "target_bit_errors", None) is not None:
    settings["loop"]["stop_below"] = ["valid/bit_errors",
                                      args.target_bit_errors]
  if settings["loop"].get("stop_below"):
    settings["loop"]["stop_below"] = list(settings["loop"]["stop_below"])
  if task_name in bit.TASKS:
    size = getattr(args, "eval_batch_size", None)
    if size is not None:
      if report and size != settings.get("eval_batch_size", size):
        print(f"--eval-batch-size {size} overrides the run's saved "
              f"{settings['eval_batch_size']}")
      settings["eval_batch_size"] = size
    settings.setdefault("eval_batch_size", 100)
    if settings["eval_batch_size"] < 1:
      raise ValueError(f"--eval-batch-size must be >= 1, got "
                       f"{settings['eval_batch_size']}")
  return settings


def settings_from_args(args: argparse.Namespace, generated=None
                       ) -> Dict[str, Dict[str, Any]]:
  """The preset with the flags given applied: plain, JSON-able dicts."""
  if generated is None:
    _, generated = build_parser()
  name = args.preset or tasks.DEFAULT_PRESET.get(args.task, "default")
  return apply_flags(tasks.preset(args.task, name), args.task, args,
                     generated)


def validate_settings(task_name: str, settings: Dict[str, Any]):
  """Builds every config ``settings`` describe, training nothing.

  Raises:
    ValueError: naming the first bad setting (also for unknown names).
  """
  try:
    if task_name == "shrdlu":
      shrdlu_task.validate(settings)
      _loop_config(settings)
    elif task_name == "babi":
      config = babi.BabiConfig(**settings["task"])
      babi.parse_tasks(config.tasks)
      if config.validation and not 0 < config.valid_fraction < 1:
        raise ValueError(f"--valid-fraction must be in (0, 1) (or pass "
                         f"--no-validation), got {config.valid_fraction}")
      if config.eval_stories < 0:
        raise ValueError(f"--eval-stories must be >= 0, got "
                         f"{config.eval_stories}")
      if config.remat_chunk is not None and config.remat_chunk < 1:
        raise ValueError(f"--remat-chunk must be >= 1, got "
                         f"{config.remat_chunk}")
      babi_model_config(settings.get("kind", "dnc"), settings["model"], 8)
      if config.validation:
        _loop_config(settings, select_metric="valid/mean_error")
      else:
        _loop_config(settings, select_metric=None, patience=None)
    else:
      task = bit.TASKS[task_name](**settings["task"])
      kind = settings.get("kind", "dnc")
      check_kind(kind, ("dnc", "ntm"))
      model_config(kind, settings["model"], task.input_size,
                   task.output_size)
      _loop_config(settings)
    OptimizerConfig(**settings["optimizer"])
  except TypeError as error:  # An unknown or missing field.
    raise ValueError(f"bad settings for task {task_name!r}: {error}") from None


# --- Bit tasks. -----------------------------------------------------------

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


def _loop_config(settings: Dict[str, Any], **overrides) -> LoopConfig:
  loop = dict(settings["loop"], **overrides)
  if loop.get("stop_below"):
    loop["stop_below"] = tuple(loop["stop_below"])
  return LoopConfig(**loop)


def run(settings: Dict[str, Any], task_name: str, out_dir, *,
        resume: bool = False, progress: bool = True,
        stop_after: Optional[int] = None,
        save_settings: Optional[Dict[str, Any]] = None,
        may_change: Sequence[str] = ()) -> Dict[str, Any]:
  """Trains with ``settings`` (as :func:`settings_from_args` builds them).

  ``save_settings`` is written to ``settings.json`` once every setting,
  and on ``resume`` the checkpoint's record, has been checked, just before
  the first step.
  """
  if task_name == "babi":
    return run_babi(settings, out_dir, resume=resume, progress=progress,
                    stop_after=stop_after, save_settings=save_settings,
                    may_change=may_change)
  if task_name == "shrdlu":
    return run_shrdlu(settings, out_dir, resume=resume, progress=progress,
                      stop_after=stop_after, save_settings=save_settings,
                      may_change=may_change)
  task = bit.TASKS[task_name](**settings["task"])
  kind = settings.get("kind", "dnc")  # A preset's "kind"; "dnc" if absent.
  check_kind(kind, ("dnc", "ntm"))
  config = model_config(kind, settings["model"], task.input_size,
                        task.output_size)
  loop_config = _loop_config(settings)
  optimizer_config = OptimizerConfig(**settings["optimizer"])
  model = sequence_model(kind, config)
  evaluate = make_evaluate(task, model.apply, loop_config.seed,
                           settings["eval_batch_size"])
  record = dict(settings, task_name=task_name,
                task=dataclasses.asdict(task),
                model=dataclasses.asdict(config))
  return train(init_fn=model.init, apply_fn=model.apply, task=task,
               optimizer_config=optimizer_config, loop_config=loop_config,
               out_dir=out_dir, run_record=record, evaluate=evaluate,
               resume=resume, progress=progress, stop_after=stop_after,
               model=model, may_change=may_change,
               on_start=settings_writer(out_dir, save_settings))


# --- Mini-SHRDLU. ---------------------------------------------------------

def shrdlu_parts(settings: Dict[str, Any]):
  """``(task, model, optimizer config, loop config, run record)``."""
  task = shrdlu_task.ShrdluTask(shrdlu_task.ShrdluConfig(**settings["task"]))
  model = task.make_model(settings["model"])
  loop_config = _loop_config(settings)
  optimizer_config = OptimizerConfig(**settings["optimizer"])
  record = {"task_name": "shrdlu", "task": dataclasses.asdict(task.config),
            "model": dict(settings["model"]),
            "optimizer": dataclasses.asdict(optimizer_config),
            "loop": dataclasses.asdict(loop_config)}
  return task, model, optimizer_config, loop_config, record


def run_shrdlu(settings: Dict[str, Any], out_dir, *, resume: bool = False,
               progress: bool = True, stop_after: Optional[int] = None,
               save_settings: Optional[Dict[str, Any]] = None,
               may_change: Sequence[str] = ()) -> Dict[str, Any]:
  """Trains a Mini-SHRDLU agent (the task's own model and step)."""
  task, model, optimizer_config, loop_config, record = shrdlu_parts(settings)
  return train(init_fn=model.init, apply_fn=model.apply, task=task,
               optimizer_config=optimizer_config, loop_config=loop_config,
               out_dir=out_dir, run_record=record, resume=resume,
               progress=progress, stop_after=stop_after, model=model,
               may_change=may_change,
               on_start=settings_writer(out_dir, save_settings))


# --- bAbI. ----------------------------------------------------------------

def babi_model_config(kind: str, model: Dict[str, Any], vocab_size: int):
  """The model settings for ``vocab_size`` words (LSTM: hidden size only).

  A :class:`~dnc_jax.DNCConfig` (``dnc``, ``lstm``) or an
  :class:`~dnc_jax.ntm.NTMConfig` (``ntm``); see
  :func:`experiments.models.model_config`.
  """
  return model_config(kind, model, vocab_size, vocab_size)


class BabiParts(NamedTuple):
  """What a bAbI run is built from (:func:`babi_parts`)."""

  task: babi.BabiTask
  model: Model
  loop: LoopConfig
  optimizer: OptimizerConfig
  record: Dict[str, Any]
  vocab: babi_data.Vocabulary


def babi_parts(settings: Dict[str, Any], preset: Optional[str] = None,
               select: bool = True) -> BabiParts:
  """The task (splits, vocabulary and validation subset drawn with the
  loop's seed), model, loop and optimiser configs and the run record of a
  bAbI run; ``select=False``: no best parameters or early stopping."""
  config = babi.BabiConfig(**settings["task"])
  if config.data_dir is None:
    raise ValueError("--data-dir is required for bAbI")
  if config.validation and not 0 < config.valid_fraction < 1:
    raise ValueError(f"--valid-fraction must be in (0, 1) (or pass "
                     f"--no-validation), got {config.valid_fraction}")
  task_numbers = babi.parse_tasks(config.tasks)
  seed = settings["loop"].get("seed", 0)
  splits = babi_data.load_splits(
      config.data_dir, config.valid_fraction if config.validation else 0.0,
      seed, task_numbers)
  vocab = babi_data.Vocabulary.build(splits["train"])
  valid = (babi.validation_subset(splits["valid"], config.eval_stories, seed)
           if config.validation else None)
  task = babi.BabiTask(splits["train"], vocab, valid=valid)
  kind = settings["kind"]
  model_config = babi_model_config(kind, settings["model"], len(vocab))
  transformed = babi_model(kind, model_config, config.remat_chunk)
  train_apply = None
  if uses_dropout(kind, model_config):  # Dropout on in training only.
    train_apply = babi.one_hot_inputs(babi_model(
        kind, model_config, config.remat_chunk, is_training=True).apply,
        len(vocab))
  model = Model(babi.one_hot_inputs(transformed.init, len(vocab)),
                babi.one_hot_inputs(transformed.apply, len(vocab)),
                train_apply=train_apply)
  if config.validation and select:
    loop = _loop_config(settings, select_metric="valid/mean_error")
  else:
    loop = _loop_config(settings, select_metric=None, patience=None)
  optimizer = OptimizerConfig(**settings["optimizer"])
  data = {"tasks": task_numbers, "valid_fraction": config.valid_fraction,
          "vocab_sha256": hashlib.sha256(
              "\n".join(vocab.words).encode()).hexdigest(),
          "eval_stories": config.eval_stories}
  if not config.validation:
    data["validation"] = False
  record = {"kind": kind, "preset": preset or settings.get("preset"),
            "model": dataclasses.asdict(model_config),
            "optimizer": dataclasses.asdict(optimizer),
            "loop": dataclasses.asdict(loop),
            "remat_chunk": config.remat_chunk, "data": data}
  return BabiParts(task, model, loop, optimizer, record, vocab)


def run_babi(settings: Dict[str, Any], out_dir, *, resume: bool = False,
             progress: bool = True, stop_after: Optional[int] = None,
             preset: Optional[str] = None,
             save_settings: Optional[Dict[str, Any]] = None,
             may_change: Sequence[str] = ()) -> Dict[str, Any]:
  """Trains on bAbI jointly; ``settings`` as a bAbI preset holds them."""
  parts = babi_parts(settings, preset)
  out = pathlib.Path(out_dir)
  write_settings = settings_writer(out, save_settings)

  def on_start():
    write_settings()
    parts.vocab.save(out / "vocab.json")

  return train(init_fn=parts.model.init, apply_fn=parts.model.apply,
               task=parts.task, optimizer_config=parts.optimizer,
               loop_config=parts.loop, out_dir=out, run_record=parts.record,
               resume=resume, progress=progress, stop_after=stop_after,
               model=parts.model, may_change=may_change, on_start=on_start)


def settings_writer(out_dir, saved: Optional[Dict[str, Any]]
                     ) -> Callable[[], None]:
  """The trainer's ``on_start``: writes ``saved`` to ``settings.json``.

  Called once the checkpoint (on ``--resume``) has accepted the settings,
  so a refused resume leaves the run's settings as they were.
  """

  def write():
    out = pathlib.Path(out_dir)
    make_run_folder(out)
    if saved is not None:
      (out / SETTINGS_FILE).write_text(json.dumps(saved, indent=2))

  return write


# --- First use and the command line. --------------------------------------

def ensure_kernels(wait_before_saying: float = 1.0):
  """Builds the CPU kernels now if they are not cached, saying so."""
  from dnc_jax import cpu_kernels  # pylint: disable=import-outside-toplevel
  if jax.default_backend() != "cpu":
    return
  started = time.time()
  worker = threading.Thread(target=cpu_kernels.available, daemon=True)
  worker.start()
  worker.join(wait_before_saying)
  if worker.is_alive():
    print("building the CPU kernels (first use, ~45 s) ...", flush=True)
    worker.join()
    print(f"done in {time.time() - started:.0f} s", flush=True)


def _check_out(out: pathlib.Path, resume: bool):
  """One-line errors for an output folder that cannot work, creating none."""
  probe = out
  while not probe.exists():
    probe = probe.parent
  if not probe.is_dir():
    raise CheckpointError(f"cannot create the run folder {out}: {probe} is "
                          "a file")
  if not os.access(probe, os.W_OK):
    raise CheckpointError(f"cannot create the run folder {out}: {probe} is "
                          "not writable")
  if resume and not out.is_dir():
    print(f"no run folder {out}: starting afresh")


def main(argv: Optional[List[str]] = None, prog: str = "dnc-train",
         task: Optional[str] = None) -> int:
  argv = sys.argv[1:] if argv is None else list(argv)
  if task is None:
    # The graph tasks keep their curricula in experiments.graph_cli.
    from experiments import graph_cli  # pylint: disable=import-outside-toplevel
    if graph_cli.is_graph_run(argv):
      return graph_cli.main(argv, prog=prog)
  parser, generated = build_parser(prog, task)
  args = parser.parse_args(argv)
  try:
    distributed.initialize(args.coordinator_address, args.num_processes,
                           args.process_id)
    task_name, preset_name, settings, out = _settings(args, generated)
    validate_settings(task_name, settings)
    _check_out(out, args.resume)
    ensure_kernels()
    started = time.time()
    saved = {"task_name": task_name, "preset": preset_name,
             "settings": settings}
    previous = (saved_settings(out) if args.resume and out.is_dir()
                else None)
    changeable = allowed_changes(args)
    # Several processes train through the sweep's mesh (one member or more).
    if sweep.is_sweep(args, previous) or jax.process_count() > 1:
      sweep.check_task(task_name)
      if changeable:
        raise ValueError("--allow-change is not for sweeps (each member's "
                         "optimiser settings are swept with --sweep)")
      saved["sweep"] = sweep.sweep_spec_from_args(args, settings, previous)
      extra = {"preset": preset_name} if task_name == "babi" else {}
      summary = sweep.run_sweep(
          settings, task_name, out, saved["sweep"], resume=args.resume,
          progress=not args.no_progress, model_devices=args.mesh_model,
          on_start=(settings_writer(out, saved)
                    if jax.process_index() == 0 else None), **extra)
      summary = {k: summary[k] for k in ("step", "stopped", "train", "eval",
                                         "mesh", "processes")}
    elif args.mesh_model is not None:
      raise ValueError("--mesh-model applies to sweeps (--seeds, --sweep)")
    elif task_name == "babi":
      summary = run_babi(settings, out, resume=args.resume,
                         progress=not args.no_progress, preset=preset_name,
                         save_settings=saved, may_change=changeable)
    else:
      summary = run(settings, task_name, out, resume=args.resume,
                    progress=not args.no_progress, save_settings=saved,
                    may_change=changeable)
  except (ValueError, TypeError, KeyError, FileNotFoundError,
          CheckpointError, babi_data.BabiFormatError) as error:
    message = error.args[0] if isinstance(error, KeyError) else error
    parser.exit(2, f"{prog}: error: {message}\n")
  except TrainingDiverged as error:
    parser.exit(3, f"{prog}: error: {error}\n")
  elapsed = time.time() - started
  print(json.dumps({"out": str(out), "wall_seconds": round(elapsed, 1),
                    **summary}, indent=2))
  return 130 if summary["stopped"] == "interrupted" else 0


def _settings(args, generated):
  """``(task, preset, settings, out)`` from the preset or the saved run."""
  saved = None
  if args.resume and args.out:
    saved = saved_settings(pathlib.Path(args.out))
  if saved is not None:
    task_name = saved["task_name"]
    if args.task and args.task != task_name:
      raise ValueError(f"--task {args.task} but the run in {args.out} "
                       f"trains {task_name!r}")
    if args.preset and saved.get("preset") and args.preset != saved["preset"]:
      print(f"--preset {args.preset} ignored: resuming the run's saved "
            f"settings (preset {saved['preset']!r})")
    preset_name = saved.get("preset")
    settings = apply_flags(saved["settings"], task_name, args, generated,
                           report=True)
    if task_name == "babi" and "kind" not in settings:
      settings["kind"] = tasks.PRESETS["babi"][preset_name or "dnc1"]["kind"]
  else:
    if args.task is None:
      raise ValueError("--task is required (or --resume with --out of an "
                       "existing run)")
    task_name = args.task
    preset_name = args.preset or tasks.DEFAULT_PRESET.get(task_name,
                                                          "default")
    settings = apply_flags(tasks.preset(task_name, preset_name), task_name,
                           args, generated)
    if task_name == "babi":
      settings["preset"] = preset_name
  if task_name == "babi":
    settings.pop("preset", None)
    if not settings["task"].get("data_dir"):
      raise ValueError("--data-dir is required for bAbI")
    data_dir = pathlib.Path(settings["task"]["data_dir"])
    if not data_dir.is_dir():
      raise FileNotFoundError(f"bAbI folder {data_dir} does not exist")
  out = pathlib.Path(args.out or f"runs/{task_name}-{preset_name}"
                     if task_name != "babi" else
                     args.out or f"runs/babi-{preset_name}")
  return task_name, preset_name, settings, out


def babi_main(argv: Optional[List[str]] = None) -> int:
  """``dnc-babi-train``: ``dnc-train --task babi``."""
  return main(argv, prog="dnc-babi-train", task="babi")


if __name__ == "__main__":
  sys.exit(main())
