"""``dnc-graph-train``: the one trainer on the graph tasks, under curricula.

Examples::

  dnc-graph-train --task traversal --preset cpu --out runs/traversal
  dnc-graph-train --task inference --preset cpu_lstm    # LSTM baseline
  dnc-graph-train --out runs/traversal --resume         # settings from the run

The same loop as ``dnc-train`` (``experiments.loop.train``): progress bar,
checkpoints (parameters, optimiser and curriculum state), exact
``--resume``, ``metrics.jsonl`` with the lesson and accuracy of every
evaluation (``valid/accuracy``, ``valid/lesson``, ``valid/examples_seen``)
and a ``curriculum`` line each time a lesson is passed. A preset fixes every
setting; any flag given overrides it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from dnc_jax import DNCConfig
from experiments import flags as flag_gen
# The same flag help and --link-sparsity 0 reading as dnc-train's.
from experiments.cli import (_OPTIMIZER_HELP, _no_link,
                             add_allow_change_flag, allowed_changes,
                             settings_writer)
from experiments.checkpoints import Checkpointer, CheckpointError
from experiments.loop import (LoopConfig, OptimizerConfig, load_params,
                              make_run_folder, train, TrainingDiverged)
from experiments.tasks import graph

SETTINGS_FILE = "settings.json"


def build_parser(prog: str = "dnc-graph-train"
                 ) -> Tuple[argparse.ArgumentParser, List[flag_gen.Flag]]:
  """The parser and its generated flags (one per config field)."""
  parser = argparse.ArgumentParser(
      prog=prog, description=__doc__.split("\n\n")[0],
      formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--task", default=None,
                      help=f"one of {list(graph.TASKS)} (default with "
                      "--resume: the run's)")
  parser.add_argument("--preset", default=None,
                      help="settings to start from: paper, cpu, lstm, "
                      "cpu_lstm (default paper)")
  parser.add_argument("--kind", default=None, choices=graph.KINDS,
                      help="model: the DNC or the LSTM-only baseline "
                      "(default: the preset's)")
  groups = {name: parser.add_argument_group(name)
            for name in ("task", "model", "optimizer", "loop")}
  seen = {"task", "preset", "kind", "out", "resume", "no-progress"}
  generated = []
  generated += flag_gen.add_dataclass_flags(
      groups["task"], "task", [graph.GraphConfig], seen=seen)
  generated += flag_gen.add_dataclass_flags(
      groups["model"], "model", [DNCConfig],
      skip=("output_size", "input_size"), seen=seen,
      rename={"use_temporal_links": "no-temporal-links"},
      convert={"link_sparsity": _no_link},
      helps={"link_sparsity": "sparse link K (0: dense link)",
             "use_temporal_links": "drop the link matrix",
             "clip_value": "clip controller and output (0: off)"})
  generated += flag_gen.add_dataclass_flags(
      groups["optimizer"], "optimizer", [OptimizerConfig], seen=seen,
      rename={"name": "optimizer"}, helps=_OPTIMIZER_HELP)
  generated += flag_gen.add_dataclass_flags(
      groups["loop"], "loop", [LoopConfig], seen=seen)
  parser.add_argument("--out", default=None,
                      help="run folder (default runs/<task>-<preset>)")
  parser.add_argument("--resume", action="store_true",
                      help="continue the run in --out from its checkpoint")
  add_allow_change_flag(parser)
  parser.add_argument("--no-progress", action="store_true",
                      help="no progress bar")
  parser.add_argument("--init-from", default=None, metavar="RUN",
                      help="start from the parameters of another graph run "
                      "(a run folder or a params.npz copy such as "
                      "checkpoints/graph-traversal) instead of a random "
                      "initialisation; the model must have the same "
                      "parameter shapes (transfer between tasks)")
  # Taken only to refuse them with the reason (experiments.sweep.check_task).
  parser.add_argument("--seeds", default=None,
                      help="not for graph tasks: their curricula diverge "
                      "between members (see docs/scaling.md)")
  parser.add_argument("--sweep", action="append", default=[],
                      help=argparse.SUPPRESS)
  return parser, generated


def preset(task: str, name: str) -> Dict[str, Any]:
  """Preset ``name`` of graph task ``task``; ValueError naming either."""
  graph.check_task(task)
  from experiments.graphs import presets  # pylint: disable=g-import-not-at-top
  return presets.preset(task, name)


def apply_flags(settings: Dict[str, Any], task_name: str, args, generated,
                report: bool = False) -> Dict[str, Any]:
  """``settings`` with the flags given; ``report``: print each change."""
  fields = graph.task_fields(task_name)
  for flag, value in flag_gen.given(args, generated):
    if flag.section == "task" and flag.field not in fields:
      raise ValueError(f"--{flag.name} does not apply to task "
                       f"{task_name!r}")
    section = settings.setdefault(flag.section, {})
    if report and section.get(flag.field) not in (None, value):
      print(f"--{flag.name} {value} overrides the run's saved "
            f"{section[flag.field]!r}")
    section[flag.field] = value
  if getattr(args, "kind", None):
    settings["kind"] = args.kind
  return settings


def validate_settings(task_name: str, settings: Dict[str, Any]):
  """Builds every config ``settings`` describe (the task included, so a
  lesson out of range is named); ValueError on the first bad one."""
  graph.check_task(task_name)
  try:
    config = graph.GraphConfig(**settings["task"])
    graph.make_task(task_name, config)
    graph.model_config(settings.get("kind", "dnc"), settings["model"])
    LoopConfig(**settings["loop"])
    OptimizerConfig(**settings["optimizer"])
  except TypeError as error:
    raise ValueError(f"bad settings for task {task_name!r}: {error}") from None


def run(settings: Dict[str, Any], task_name: str, out_dir, *,
        resume: bool = False, progress: bool = True,
        stop_after: Optional[int] = None,
        save_settings: Optional[Dict[str, Any]] = None,
        may_change: Sequence[str] = ()) -> Dict[str, Any]:
  """Trains graph task ``task_name`` with ``settings`` (a preset's layout).

  ``save_settings`` is written to ``settings.json`` once the checkpoint (on
  ``resume``) has accepted the settings; ``may_change`` as
  :func:`experiments.loop.train`.
  """
  validate_settings(task_name, settings)
  kind = settings.get("kind", "dnc")
  task = graph.make_task(task_name, graph.GraphConfig(**settings["task"]))
  model_record = graph.model_config(kind, settings["model"])
  model = graph.make_model(kind, model_record)
  init_fn = model.init
  source = settings.get("init_from")
  out = pathlib.Path(out_dir)
  if source:
    # A path at the start; the source's record once the run has begun, so
    # a resumed run (perhaps elsewhere, without the source) matches its
    # checkpoints without reading the source again.
    if isinstance(source, str):
      init_fn, source = warm_start(model.init, kind, source, model_record)
    elif not (resume and _has_checkpoint(out)):
      init_fn, source = warm_start(model.init, kind, source["path"],
                                   model_record)
    settings["init_from"] = source
    if save_settings is not None:
      save_settings["settings"]["init_from"] = source
  loop_config = LoopConfig(**settings["loop"])
  optimizer_config = OptimizerConfig(**settings["optimizer"])
  record = {"graph_task": task_name, "kind": kind,
            "task": settings["task"], "model": model_record,
            "optimizer": dataclasses.asdict(optimizer_config),
            "loop": dataclasses.asdict(loop_config)}
  if source:
    record["init_from"] = source
  return train(init_fn=init_fn, apply_fn=model.apply, task=task,
               optimizer_config=optimizer_config, loop_config=loop_config,
               out_dir=out, run_record=record, resume=resume,
               progress=progress, stop_after=stop_after, model=model,
               may_change=may_change,
               on_start=settings_writer(out, save_settings))


def _has_checkpoint(out: pathlib.Path) -> bool:
  folder = out / "checkpoints"
  return folder.is_dir() and any(p.name.isdigit() for p in folder.iterdir())


def warm_start(init: Callable, kind: str, source,
               model_record: Optional[Dict[str, Any]] = None
               ) -> Tuple[Callable, Dict[str, Any]]:
  """An ``init_fn`` that returns the parameters of graph run ``source``.

  The parameters are checked against ``init``'s (same modules, names and
  shapes) when the trainer first calls it; the memory size may differ, as
  it has no parameters.

  One change of model is allowed: a source trained without content masks
  may start a DNC with ``content_masking`` (``model_record`` says so). The
  masks' interface columns, which follow all others, start at zero weight
  and bias, so every mask starts at a uniform 0.5; a content similarity is
  a cosine, unchanged by scaling key and memory alike, so the new network
  starts computing what the source computed (``docs/maths.md`` §8.1) and
  learns from there which parts of a word to compare.

  Returns:
    ``(init_fn, record)``; ``record`` names the source run, its task and
    step, for the new run's record (and ``"added": ["content_masking"]``
    when the masks were added).
  Raises:
    CheckpointError: ``source`` is not a graph run.
    ValueError: the source is another kind of model, or its parameters do
      not fit (one line naming a parameter and both shapes).
  """
  loaded = load_run(source)
  if loaded.kind != kind:
    raise ValueError(f"--init-from {source}: a {loaded.kind!r} run cannot "
                     f"start a {kind!r} model")
  source_params = {m: dict(leaves) for m, leaves in loaded.params.items()}
  mask_columns = (_mask_columns(loaded.model_record, model_record)
                  if kind == "dnc" and model_record else 0)

  def init_fn(rng, inputs):
    fresh = init(rng, inputs)
    params = (_with_zero_columns(source_params, fresh, mask_columns)
              if mask_columns else source_params)
    expected = {(m, n): np.shape(v) for m, leaves in fresh.items()
                for n, v in leaves.items()}
    found = {(m, n): np.shape(v) for m, leaves in params.items()
             for n, v in leaves.items()}
    if expected != found:
      differ = sorted(k for k in set(expected) | set(found)
                      if expected.get(k) != found.get(k))
      module, name = differ[0]
      raise ValueError(
          f"--init-from {source}: parameter {module}/{name} has shape "
          f"{found.get((module, name))} there but "
          f"{expected.get((module, name))} here ({len(differ)} differ)")
    return jax.tree_util.tree_map(
        lambda new, old: jnp.asarray(old, new.dtype), fresh, params)

  record = {"path": str(source), "task": loaded.task_name,
            "step": loaded.step}
  if mask_columns:
    record["added"] = ["content_masking"]
  return init_fn, record


def _mask_columns(source: Dict[str, Any], target: Dict[str, Any]) -> int:
  """Interface columns the content masks add when ``target`` is
  ``source`` (DNCConfig fields) with ``content_masking`` turned on and
  nothing else changed but the memory size (no parameters); else 0. Not
  with link sharpness, whose columns follow the masks'."""
  ignore = ("content_masking", "memory_size")
  same = ({k: v for k, v in source.items() if k not in ignore} ==
          {k: v for k, v in target.items() if k not in ignore})
  if not (same and target.get("content_masking")
          and not source.get("content_masking")
          and not target.get("link_sharpness")):
    return 0
  return (target["num_reads"] + target["num_writes"]) * target["word_size"]


def _with_zero_columns(source, fresh, columns: int):
  """``source``'s parameters with ``columns`` zero columns appended to the
  interface layer (the content masks' pre-activations come last when
  there is no link sharpness, which :func:`_mask_columns` ensures), where
  that makes its shape ``fresh``'s; other shapes are left for the caller's
  check to name."""
  grown = {m: dict(leaves) for m, leaves in source.items()}
  for module, leaves in fresh.items():
    if not module.endswith("/interface") or module not in grown:
      continue
    for name, value in leaves.items():
      old = np.asarray(grown[module][name])
      if (np.shape(value)[-1] == old.shape[-1] + columns
          and old.shape[:-1] == np.shape(value)[:-1]):
        pad = [(0, 0)] * (old.ndim - 1) + [(0, columns)]
        grown[module][name] = np.pad(old, pad)
  return grown


# --- Loading a run (for dnc-graph-eval and the pictures). -----------------

@dataclasses.dataclass
class LoadedRun:
  """A graph run's checkpoint.

  Attributes:
    task_name: ``traversal``, ``inference`` or ``shortest_path``.
    kind: ``dnc`` or ``lstm``.
    model_record: DNCConfig fields (dnc) or the LSTM sizes.
    params: the parameters.
    curriculum: the curriculum state saved with them (``{}`` if none).
    step: the checkpoint's step.
    record: the run record.
  """

  task_name: str
  kind: str
  model_record: Dict[str, Any]
  params: Any
  curriculum: Dict[str, Any]
  step: int
  record: Dict[str, Any]

  def dnc_config(self, memory_size: Optional[int] = None) -> DNCConfig:
    if self.kind != "dnc":
      raise ValueError(f"the run trains {self.kind!r}, not a DNC")
    record = dict(self.model_record)
    if memory_size is not None:
      record["memory_size"] = memory_size
    return DNCConfig(**record)


def load_run(run_dir, step: Optional[int] = None) -> LoadedRun:
  """A graph run folder's latest (or ``step``) checkpoint.

  Accepts a training run folder (``checkpoints/``) or a parameters-only
  copy (``params.npz`` and ``run.json``, as ``checkpoints/graph-*`` hold).

  Raises:
    CheckpointError: not a graph run folder (one line, naming it).
  """
  run_dir = pathlib.Path(run_dir)
  if (run_dir / "params.npz").is_file():
    return _load_exported(run_dir)
  if not (run_dir / "checkpoints").is_dir():
    raise CheckpointError(f"{run_dir} is not a graph run folder (no "
                          "checkpoints/ or params.npz in it)")
  checkpointer = Checkpointer(run_dir / "checkpoints", create=False)
  try:
    saved = checkpointer.read_record(step)
  finally:
    checkpointer.close()
  record = saved["run"]
  if "graph_task" not in record:
    raise CheckpointError(f"{run_dir} is not a graph-task run")
  model = graph.make_model(record["kind"], record["model"])
  task = graph.make_task(record["graph_task"])
  inputs = task.sample(np.random.default_rng(0), 1).inputs
  params, full, _ = load_params(run_dir, model.init,
                                OptimizerConfig(**record["optimizer"]),
                                inputs, step=step)
  return LoadedRun(record["graph_task"], record["kind"], record["model"],
                   params, full.get("curriculum", {}), full["step"], record)


def export_params(run: LoadedRun, out_dir) -> pathlib.Path:
  """Writes ``params.npz`` and ``run.json`` (parameters only) to
  ``out_dir``; :func:`load_run` reads them back."""
  out = pathlib.Path(out_dir)
  make_run_folder(out)
  flat = {"/".join((module, name)): np.asarray(value)
          for module, leaves in run.params.items()
          for name, value in leaves.items()}
  np.savez_compressed(out / "params.npz", **flat)
  (out / "run.json").write_text(json.dumps(
      {"run": run.record, "curriculum": run.curriculum, "step": run.step},
      indent=2))
  return out / "params.npz"


def package_run(run_dir, dest, resume: bool = True) -> pathlib.Path:
  """A small committed copy of a run: parameters only (``params.npz``,
  ``run.json``), its metrics, settings and summary, and with ``resume``,
  under ``resume/``, the latest full checkpoint (parameters, optimiser,
  curriculum) with the settings, so ``dnc-graph-train --out DEST/resume
  --resume`` continues (``resume=False``: a paper-size run whose optimiser
  state is too big to carry; ``--init-from DEST`` starts from it)."""
  import shutil  # pylint: disable=g-import-not-at-top
  run_dir, dest = pathlib.Path(run_dir), pathlib.Path(dest)
  run = load_run(run_dir)
  export_params(run, dest)
  for name in ("metrics.jsonl", "settings.json", "summary.json"):
    if (run_dir / name).is_file():
      shutil.copy(run_dir / name, dest / name)
  if not resume:
    return dest
  resume_dir = dest / "resume"
  if resume_dir.exists():
    shutil.rmtree(resume_dir)
  (resume_dir / "checkpoints").mkdir(parents=True)
  shutil.copytree(run_dir / "checkpoints" / str(run.step),
                  resume_dir / "checkpoints" / str(run.step))
  for name in ("settings.json", "metrics.jsonl"):
    if (run_dir / name).is_file():
      shutil.copy(run_dir / name, resume_dir / name)
  return dest


def _load_exported(run_dir: pathlib.Path) -> LoadedRun:
  try:
    saved = json.loads((run_dir / "run.json").read_text())
    with np.load(run_dir / "params.npz") as data:
      params: Dict[str, Dict[str, Any]] = {}
      for key in data.files:
        module, name = key.rsplit("/", 1)
        params.setdefault(module, {})[name] = data[key]
  except (OSError, ValueError, KeyError) as error:
    raise CheckpointError(f"{run_dir}: unreadable exported parameters "
                          f"({error})") from None
  record = saved["run"]
  return LoadedRun(record["graph_task"], record["kind"], record["model"],
                   params, saved.get("curriculum", {}), saved["step"], record)


# --- The command line. ----------------------------------------------------

def _settings(args, generated):
  """``(task, preset, settings, out)`` from the preset or the saved run."""
  saved = None
  if args.resume and args.out:
    path = pathlib.Path(args.out) / SETTINGS_FILE
    if path.is_file():
      try:
        saved = json.loads(path.read_text())
      except (OSError, ValueError) as error:
        raise CheckpointError(f"{path} is unreadable ({error})") from None
  if saved is not None:
    task_name = saved["task_name"]
    if args.task and args.task != task_name:
      raise ValueError(f"--task {args.task} but the run in {args.out} "
                       f"trains {task_name!r}")
    if args.preset and args.preset != saved.get("preset"):
      print(f"--preset {args.preset} ignored: resuming the run's saved "
            f"settings (preset {saved.get('preset')!r})")
    preset_name = saved.get("preset")
    settings = apply_flags(saved["settings"], task_name, args, generated,
                           report=True)
  else:
    if args.task is None:
      raise ValueError("--task is required (or --resume with --out of an "
                       "existing run)")
    task_name = args.task
    graph.check_task(task_name)
    preset_name = args.preset or graph.DEFAULT_PRESET[task_name]
    settings = apply_flags(preset(task_name, preset_name), task_name, args,
                           generated)
    if args.init_from:
      settings["init_from"] = args.init_from
  if saved is not None and args.init_from:
    raise ValueError("--init-from starts a new run; a resumed run continues "
                     "from its own checkpoint")
  out = pathlib.Path(args.out or f"runs/{task_name}-{preset_name}")
  return task_name, preset_name, settings, out


def main(argv: Optional[List[str]] = None,
         prog: str = "dnc-graph-train") -> int:
  parser, generated = build_parser(prog)
  args = parser.parse_args(argv)
  try:
    task_name, preset_name, settings, out = _settings(args, generated)
    if args.seeds or args.sweep:
      from experiments import sweep  # pylint: disable=g-import-not-at-top
      sweep.check_task(task_name)  # Raises: graph tasks do not sweep.
    validate_settings(task_name, settings)
    if args.resume and not out.is_dir():
      print(f"no run folder {out}: starting afresh")
    started = time.time()
    saved = {"task_name": task_name, "preset": preset_name,
             "settings": settings}
    summary = run(settings, task_name, out, resume=args.resume,
                  progress=not args.no_progress, save_settings=saved,
                  may_change=allowed_changes(args))
  except (ValueError, TypeError, KeyError, FileNotFoundError,
          CheckpointError) as error:
    message = error.args[0] if isinstance(error, KeyError) else error
    parser.exit(2, f"{prog}: error: {message}\n")
  except TrainingDiverged as error:
    parser.exit(3, f"{prog}: error: {error}\n")
  elapsed = time.time() - started
  print(json.dumps({"out": str(out), "wall_seconds": round(elapsed, 1),
                    **summary}, indent=2))
  return 130 if summary["stopped"] == "interrupted" else 0


def is_graph_run(argv: List[str]) -> bool:
  """Whether a ``dnc-train`` command line names a graph task or run."""
  for i, arg in enumerate(argv):
    value = None
    if arg.startswith("--task="):
      value = arg.split("=", 1)[1]
    elif arg == "--task" and i + 1 < len(argv):
      value = argv[i + 1]
    if value is not None:
      return value in graph.TASKS
  for i, arg in enumerate(argv):
    out = (arg.split("=", 1)[1] if arg.startswith("--out=") else
           argv[i + 1] if arg == "--out" and i + 1 < len(argv) else None)
    if out and "--resume" in argv:
      try:
        saved = json.loads((pathlib.Path(out) / SETTINGS_FILE).read_text())
      except (OSError, ValueError):
        return False
      return saved.get("task_name") in graph.TASKS
  return False


def train_main(argv: Optional[List[str]] = None) -> int:
  """``dnc-train`` for every task: graph tasks here, the rest in
  :func:`experiments.cli.main`."""
  argv = sys.argv[1:] if argv is None else list(argv)
  if is_graph_run(argv):
    return main(argv, prog="dnc-train")
  from experiments import cli  # pylint: disable=g-import-not-at-top
  return cli.main(argv)


if __name__ == "__main__":
  sys.exit(main())
