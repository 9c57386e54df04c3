"""``dnc-babi-eval``: the per-task bAbI table of a trained run.

Example::

  dnc-babi-eval --checkpoint runs/babi-dnc1 --data-dir .../en-10k --split valid

Prints Extended Data Table 1's layout (question error per task, the mean,
the number of failed tasks above 5%) beside the paper's DNC1 means (and,
for an NTM run, the paper's NTM summary), and
writes ``babi-<split>.json`` and ``babi-<split>.md`` into the run folder
(or ``--out``). The best parameters (lowest validation error) are used when
the run kept them, else its latest checkpoint.

On a sweep (``dnc-train --task babi --seeds S``) every member is evaluated
(the latest checkpoint: sweeps keep no best parameters) and the table gives
each task's error as mean ± s.d. over the members, the best member's, and
each member's failed tasks; ``--member M`` evaluates member ``M`` alone.

``--beside T1.json,T2.json`` adds a second table: this run's error per task
beside the tables another ``dnc-babi-eval`` wrote (``babi-<split>.json`` of
other runs, same split), one column each, e.g. an NTM run beside a DNC1
run at equal stories seen::

  dnc-babi-eval --checkpoint runs/babi-ntm --data-dir .../en-10k \
    --beside checkpoints/babi-dnc1/babi-valid.json
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
from typing import List, Optional

from experiments import babi_data, sweep
from experiments.checkpoints import Checkpointer, CheckpointError
from experiments.loop import OptimizerConfig, make_run_folder
from experiments.loop import load_params as _load_params
from experiments.models import babi_model, config_from_record
from experiments.tasks import babi as babi_task
from experiments.tasks.babi import make_predict, validation_subset


def load_params(run: pathlib.Path, init_fn, optimizer: OptimizerConfig,
                sample_ids, use_best: bool):
  """The run's best parameters if kept (and wanted), else the latest."""
  params, _, which = _load_params(run, init_fn, optimizer, sample_ids,
                                  use_best=use_best)
  return params, which


def read_beside(paths: Optional[str], split: str) -> List[dict]:
  """The ``babi-<split>.json`` tables named in ``--beside`` (comma-
  separated), each checked to be a table of ``split``.

  Raises:
    ValueError: a file that is missing, not JSON, not such a table, or of
      another split, named.
  """
  tables = []
  for path in [p for p in (paths or "").split(",") if p]:
    try:
      table = json.loads(pathlib.Path(path).read_text())
    except (OSError, ValueError) as error:
      raise ValueError(f"--beside {path}: cannot read it as a "
                       f"dnc-babi-eval table ({error})") from error
    if not isinstance(table, dict) or not {"per_task", "mean_error",
                                           "failed_tasks"} <= set(table):
      raise ValueError(f"--beside {path}: not a dnc-babi-eval table (no "
                       "per_task, mean_error and failed_tasks)")
    if table.get("split") != split:
      raise ValueError(f"--beside {path}: a table of the "
                       f"{table.get('split')!r} split, not {split!r}")
    tables.append(table)
  return tables


def beside_table(tables: List[dict], split: str) -> str:
  """Error per task of several runs' tables, one column each (Markdown).

  Each column is headed by the run's model kind, folder and which
  parameters were evaluated; the paper's DNC1 mean is the last column.
  """
  # Tables written before the kind was recorded name only their run.
  heads = [(f"{t['kind']}: " if t.get("kind") else "")
           + f"{t.get('run', '?')}, {t.get('parameters', '?')}"
           for t in tables]
  tasks = sorted({int(k) for t in tables for k in t["per_task"]})
  lines = [f"| task | " + " | ".join(f"{h} {split} error %" for h in heads)
           + " | paper DNC1 mean % |",
           "|---|" + "---|" * (len(tables) + 1)]
  for task in tasks:
    cells = []
    for t in tables:
      error = {int(k): v for k, v in t["per_task"].items()}.get(task)
      cells.append("-" if error is None else f"{error:.1f}")
    lines.append(f"| {task} | " + " | ".join(cells) + f" | "
                 f"{babi_task.PAPER_DNC1_MEAN.get(task, float('nan')):.1f} |")
  lines.append("| **mean** | " + " | ".join(
      f"**{t['mean_error']:.1f}**" for t in tables)
               + f" | {babi_task.PAPER_DNC1_MEAN_CELL} |")
  lines.append(f"| **failed (> {babi_task.FAILED_ABOVE:g}%)** | " + " | ".join(
      f"**{t['failed_tasks']}**" for t in tables)
               + f" | {babi_task.PAPER_DNC1_FAILED_CELL} |")
  return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
  parser = argparse.ArgumentParser(prog="dnc-babi-eval",
                                   description=__doc__.split("\n\n")[0])
  parser.add_argument("--checkpoint", required=True,
                      help="a dnc-babi-train run folder")
  parser.add_argument("--data-dir", required=True)
  parser.add_argument("--split", choices=("valid", "test"), default="valid")
  parser.add_argument("--latest", action="store_true",
                      help="use the latest checkpoint, not the best")
  parser.add_argument("--max-stories", type=int, default=0,
                      help="at most this many stories per task (0: all)")
  parser.add_argument("--batch-size", type=int, default=32)
  parser.add_argument("--out", default=None,
                      help="folder for the JSON and Markdown tables")
  parser.add_argument("--member", type=int, default=None,
                      help="a sweep's member M alone (default: all members, "
                      "mean ± s.d.)")
  parser.add_argument("--beside", default=None,
                      help="comma-separated babi-<split>.json tables of "
                      "other runs to show beside this one")
  args = parser.parse_args(argv)
  run = pathlib.Path(args.checkpoint)
  try:
    beside = read_beside(args.beside, args.split)
  except ValueError as error:
    parser.exit(2, f"dnc-babi-eval: error: {error}\n")
  if not (run / "checkpoints").is_dir() or not (run / "vocab.json").is_file():
    parser.exit(2, f"dnc-babi-eval: error: {run} is not a dnc-babi-train "
                "run folder (no checkpoints/ and vocab.json in it)\n")
  if args.max_stories < 0 or args.batch_size < 1:
    parser.exit(2, "dnc-babi-eval: error: --max-stories must be >= 0 and "
                "--batch-size >= 1\n")
  try:
    checkpointer = Checkpointer(run / "checkpoints", create=False)
    record = checkpointer.read_record()["run"]
    checkpointer.close()
    vocab = babi_data.Vocabulary.load(run / "vocab.json")
    data = record["data"]
    splits = babi_data.load_splits(args.data_dir, data["valid_fraction"],
                                   record["loop"]["seed"], data["tasks"])
    if args.split not in splits:
      raise FileNotFoundError(f"{args.data_dir} has no qaN_*_test.txt files "
                              "(the test split)")
    stories = validation_subset(splits[args.split], args.max_stories,
                                record["loop"]["seed"])
    if not stories:
      raise ValueError(f"the {args.split} split of {args.data_dir} holds no "
                       "stories")
    partial = babi_task.partial_tasks(splits["train"] + splits["valid"])
    config = config_from_record(record["kind"], record["model"])
    model = babi_model(record["kind"], config, record.get("remat_chunk"))
    apply_fn = babi_task.one_hot_inputs(model.apply, len(vocab))
    init_fn = babi_task.one_hot_inputs(model.init, len(vocab))
    first = babi_task.encode(stories[0], vocab)
    sample = babi_task.pad_batch([first], babi_task.bucket_of(
        len(first.inputs)), 1)
    if record.get("sweep"):
      members, saved = sweep.load_members(run, init_fn, record,
                                          sample.inputs)
      which = f"latest (step {saved['step']})"
      if args.member is not None:
        if not 0 <= args.member < len(members):
          raise ValueError(f"--member {args.member}: the sweep has "
                           f"{len(members)} members (0 to "
                           f"{len(members) - 1})")
        which += f", member {args.member}"
        members = [members[args.member]]
    elif args.member is not None:
      raise ValueError(f"--member applies to sweeps; {run} is one run")
    else:
      params, which = load_params(run, init_fn,
                                  OptimizerConfig(**record["optimizer"]),
                                  sample.inputs, use_best=not args.latest)
      members = None
  except (CheckpointError, FileNotFoundError, KeyError, ValueError,
          babi_data.BabiFormatError) as error:
    parser.exit(2, f"dnc-babi-eval: error: {error}\n")
  predict = make_predict(apply_fn)

  def table_of(params):
    counts = babi_task.evaluate(lambda ids: predict(params, ids), stories,
                                vocab, batch_size=args.batch_size)
    return babi_task.error_table(counts, partial)

  if members is None:
    table = table_of(params)
  else:
    tables = [table_of(p) for p in members]
    table = (tables[0] if len(tables) == 1
             else babi_task.members_table(tables))
  markdown = babi_task.markdown_table(table, args.split, record["kind"])
  header = (f"{run} ({record['preset']}, {which} parameters), "
            f"{args.split} split, {sum(table['questions'].values())} "
            "questions")
  if beside:
    this = {"run": str(run), "kind": record["kind"], "parameters": which,
            **table}
    markdown += "\n\n" + beside_table([this] + beside, args.split)
  print(header)
  print(markdown)
  out = pathlib.Path(args.out) if args.out else run
  try:
    make_run_folder(out)
  except CheckpointError as error:
    parser.exit(2, f"dnc-babi-eval: error: {error}\n")
  (out / f"babi-{args.split}.json").write_text(json.dumps(
      {"run": str(run), "kind": record["kind"], "parameters": which,
       "split": args.split, **table},
      indent=2))
  (out / f"babi-{args.split}.md").write_text(header + "\n\n" + markdown
                                             + "\n")
  return 0


if __name__ == "__main__":
  sys.exit(main())
