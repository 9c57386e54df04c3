"""Graph-task evaluation, pictures and memory resizing of a trained run.

Commands::

  dnc-graph-eval --checkpoint runs/traversal --test underground
  dnc-graph-eval --checkpoint runs/inference --test family
  dnc-graph-eval --checkpoint runs/traversal --test lessons
  dnc-graph-eval --checkpoint runs/inference --test errors
  dnc-graph-plot --checkpoint runs/traversal        # Fig. 3-style PNGs
  dnc-graph-plot --untrained traversal --out /tmp   # a tiny untrained DNC
  dnc-graph-memory --checkpoint runs/traversal      # Extended Data Fig. 2

``dnc-graph-eval`` prints a table with the paper's figure beside ours and
writes it as ``graph-<test>.json`` and ``graph-<test>.md`` into the run
folder (or ``--out``). Tests: ``underground`` (traversal: random 7-step
walks, paper 98.8%; shortest path: every 4-step path, paper 55.3%),
``family`` (inference: every 4-step relation of the family tree, paper
81.8% of queries), ``lessons`` (accuracy on each lesson up to the one
reached, with the pass mark), ``errors`` (traversal and inference: where
the answers on the lesson reached go wrong, see :func:`answer_errors`),
``reads`` (inference, a DNC: whether the read heads walk the relation's
edges or read the last one only, see :mod:`experiments.graphs.walk_reads`).
Memory is not a parameter shape of this DNC,
so ``--memory-size`` runs the same parameters with N slots; the Underground
(192 triples) and family (120) tests use at least 256 and 128 by default.

Several runs trained separately (graph tasks do not sweep in one program:
their curricula diverge between members, see docs/scaling.md)::

  for s in 0 1 2; do dnc-graph-train --task traversal --preset cpu
    --seed $s --out runs/trav-$s; done            # (one line)
  dnc-graph-eval --checkpoint runs/trav-0,runs/trav-1,runs/trav-2
    --test underground --out runs/trav-eval       # (one line)

evaluate each run alike (same test, episodes and seed) and print one table
whose "ours" column is the mean +- the sample standard deviation (ddof=1,
like the paper's +- over runs, Extended Data Tables 3-5) over the runs,
then one line per run (name, step, lesson reached, accuracy per row). On
``lessons`` a row averages the runs that reached that lesson (its ``runs``
count says how many; one run has no s.d.). The runs must train the same
task with the same model kind; ``--out`` is required (no one run folder
owns the result).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import jax
import numpy as np

from experiments.checkpoints import CheckpointError
from experiments.graph_cli import LoadedRun, load_run
from experiments.graphs import (curriculum, dagger, encoding, family_tree,
                                tasks as graph_tasks, underground,
                                walk_reads)
from experiments.graphs.tasks import Lesson
from experiments.loop import make_run_folder
from experiments.tasks import graph

TESTS = ("underground", "family", "lessons", "errors", "reads")
# The paper's figures (Graves et al. 2016, main text).
PAPER = {("underground", "traversal"): 98.8,
         ("underground", "shortest_path"): 55.3,
         ("family", "inference"): 81.8}
TEST_TASKS = {"underground": ("traversal", "shortest_path"),
              "family": ("inference",),
              "lessons": graph.TASKS,
              "errors": ("traversal", "inference"),
              "reads": ("inference",)}
MIN_MEMORY = {"underground": 256, "family": 128}


def round_correct(logits, targets, mask) -> np.ndarray:
  """``[rounds]`` bool: each query's answer (a contiguous run of masked
  steps in one episode) predicted exactly, episodes in order."""
  right = np.asarray(encoding.step_correct(np.asarray(logits),
                                           np.asarray(targets)))
  mask = np.asarray(mask) > 0
  out = []
  for b in range(mask.shape[1]):
    out.extend(bool(np.all(right[r, b]))
               for r in walk_reads.query_steps(mask[:, b]))
  return np.asarray(out, bool)


class Evaluator:
  """Runs a loaded run's network (with ``memory_size`` slots, if given)."""

  def __init__(self, run: LoadedRun, memory_size: Optional[int] = None):
    self.run = run
    self.memory_size = (None if run.kind != "dnc" else
                        memory_size or run.model_record["memory_size"])
    self.model = graph.make_model(run.kind, run.model_record,
                                  self.memory_size)
    self.predict = jax.jit(self.model.apply)
    core = self.model.core

    def rollout(params, batch):
      inner = core.initial_state(params, batch.inputs.shape[1])
      return dagger.functional_rollout(core.step, params, inner, batch)

    self.rollout = jax.jit(rollout)

  def logits(self, inputs) -> np.ndarray:
    return np.asarray(self.predict(self.run.params, inputs))

  def moves(self, batch) -> np.ndarray:
    return np.asarray(self.rollout(self.run.params, batch).choice)


def _chunks(items: Sequence, size: int):
  for i in range(0, len(items), size):
    yield items[i:i + size]


def underground_test(ev: Evaluator, rng: np.random.Generator,
                     episodes: int, batch_size: int = 25) -> Dict[str, Any]:
  """Traversal: ``episodes`` random 7-step walks; shortest path: every
  (start, end) pair exactly 4 steps apart (network-only moves)."""
  u = underground.load()
  if ev.run.task_name == "traversal":
    right = total = 0
    for size in _chunks(range(episodes), batch_size):
      batch = underground.traversal_batch(rng, u, len(size))
      right += int(np.sum(encoding.episode_correct(
          ev.logits(batch.inputs), batch.targets, batch.mask)))
      total += len(size)
    what = "random 7-step traversals"
  else:
    pairs = underground.shortest_path_pairs(u, 4)
    scorer = graph_tasks.ShortestPath(Lesson((2, 2), (1, 1), (1, 1)))
    right = total = 0
    for chunk in _chunks(pairs, batch_size):
      batch = underground.shortest_path_batch(rng, u, chunk)
      right += int(np.sum(scorer.score_paths(batch, ev.moves(batch))))
      total += len(chunk)
    what = "every 4-step shortest path"
  return {"what": what, "right": right, "count": total,
          "triples": len(u.graph.edges)}


def family_test(ev: Evaluator, rng: np.random.Generator,
                episodes: int = 0, batch_size: int = 32) -> Dict[str, Any]:
  """Every followable 4-step relation query, 3 per episode."""
  del episodes  # Every query, once.
  queries = family_tree.relation_queries()
  batch = family_tree.inference_batch(rng, queries)
  results = []
  for start in range(0, batch.inputs.shape[1], batch_size):
    part = slice(start, start + batch_size)
    results.append(round_correct(ev.logits(batch.inputs[:, part]),
                                 batch.targets[:, part], batch.mask[:, part]))
  right = np.concatenate(results)
  return {"what": "4-step family relations (queries)",
          "right": int(right.sum()), "count": int(len(right)),
          "triples": len(family_tree.build().edges)}


def lesson_rows(ev: Evaluator, rng: np.random.Generator,
                episodes: int) -> List[Dict[str, Any]]:
  """Accuracy on each lesson up to the one the run reached."""
  name = ev.run.task_name
  reached = int(ev.run.curriculum.get("lesson", 1))
  schedule = curriculum.paper_schedule(name)
  rows = []
  for lesson in range(1, reached + 1):
    task = curriculum.Curriculum(name, lesson).task(lesson, pad=False)
    if name == "shortest_path":
      accuracy = task.evaluate(ev.moves, rng, episodes, 25)
    else:
      accuracy = task.evaluate(ev.logits, rng, episodes, 50)
    row = schedule.lessons[lesson - 1]
    rows.append({"test": f"lesson {lesson}", "task": name,
                 "what": (f"nodes {row.nodes}, out-degree {row.out_degree},"
                          f" length {row.length}"),
                 "ours": round(100 * accuracy, 1),
                 "paper": f">= {100 * schedule.threshold:.0f} (pass mark)",
                 "count": episodes})
  return rows


def _description_nodes(inputs: np.ndarray, b: int) -> set:
  """Node labels of episode ``b``'s graph
  (:func:`~experiments.graphs.walk_reads.description_triples`)."""
  nodes = set()
  for source, _, destination in walk_reads.description_triples(inputs, b):
    nodes.update((source, destination))
  nodes.discard(encoding.BLANK)
  return nodes


def answer_errors(logits, batch, group=None) -> Dict[str, Any]:
  """Counts of where a batch's answers go wrong (modal prediction).

  Every answer step but the terminations is one answer; its predicted
  triple (source, edge label, destination) is compared field by field
  with the target, and a wrong destination is checked against the nodes of
  the episode's own graph (read from its description). A query is a
  contiguous run of answer steps, termination included.

  Args:
    logits: ``[T, B, 90]``.
    batch: a :class:`~experiments.graphs.tasks.GraphBatch`.
    group: ``group(position, target triple, description) -> key`` for the
      per-group accuracy (``position`` counts a query's answers from 1;
      ``description``: the episode's graph as triples); default the
      position.
  Returns:
    ``{"answers", "right", "terminations", "terminations_right",
    "queries", "queries_right", "wrong_field": [source, edge,
    destination] counts over wrong answers, "not_a_node": wrong answers
    whose destination is no node of the graph, "groups": {key: [right,
    count]}}``.
  """
  group = group or (lambda position, target, description: position)
  predicted = encoding.modal_digits(logits)
  wanted = encoding.modal_digits(batch.targets)
  mask = np.asarray(batch.mask) > 0
  inputs = np.asarray(batch.inputs)
  term = np.asarray([encoding.label_digits(l) for l in encoding.TERMINATION]
                    ).reshape(9)
  out = {"answers": 0, "right": 0, "terminations": 0,
         "terminations_right": 0, "queries": 0, "queries_right": 0,
         "wrong_field": [0, 0, 0], "not_a_node": 0, "groups": {}}
  for b in range(mask.shape[1]):
    queries = walk_reads.query_steps(mask[:, b])
    if not queries:
      continue
    description = walk_reads.description_triples(inputs, b)
    nodes = _description_nodes(inputs, b)
    for run in queries:
      out["queries"] += 1
      query_right = True
      position = 0
      for t in run:
        fields_right = np.all(
            (predicted[t, b] == wanted[t, b]).reshape(3, 3), -1)
        right = bool(np.all(fields_right))
        query_right &= right
        if np.array_equal(wanted[t, b], term):
          out["terminations"] += 1
          out["terminations_right"] += right
          continue
        position += 1
        target = encoding.decode_triple(batch.targets[t, b])
        counts = out["groups"].setdefault(
            group(position, target, description), [0, 0])
        counts[0] += right
        counts[1] += 1
        out["answers"] += 1
        out["right"] += right
        if not right:
          for field in range(3):
            out["wrong_field"][field] += int(not fields_right[field])
          digits = predicted[t, b, 6:]
          label = int(digits[0] * 100 + digits[1] * 10 + digits[2])
          out["not_a_node"] += label not in nodes
      out["queries_right"] += query_right
  return out


def _merge_errors(total: Dict[str, Any], part: Dict[str, Any]):
  for key, value in part.items():
    if key == "wrong_field":
      total[key] = [a + b for a, b in zip(total.get(key, [0, 0, 0]), value)]
    elif key == "groups":
      for g, (right, count) in value.items():
        old = total.setdefault(key, {}).setdefault(g, [0, 0])
        old[0] += right
        old[1] += count
    else:
      total[key] = total.get(key, 0) + value


def error_rows(ev: Evaluator, rng: np.random.Generator, episodes: int,
               lesson: Optional[int] = None) -> List[Dict[str, Any]]:
  """:func:`answer_errors` over ``episodes`` episodes of ``lesson`` (default
  the lesson the run reached), as table rows (each a percentage of what it
  counts)."""
  name = ev.run.task_name
  lesson = lesson or int(ev.run.curriculum.get("lesson", 1))
  task = curriculum.Curriculum(name, lesson).task(lesson, pad=False)
  if name == "inference":
    # By length, and apart the relations that repeat an edge label (the
    # walk must then take the same label twice, from two nodes).
    kinds = {label: f"relation length {len(seq)}" + (
        ", an edge label repeated" if len(set(seq)) < len(seq) else "")
             for label, seq in task.relations.items()}
    # Keyed by (kind, relation label, edges of the graph that carry the
    # relation's last label): summed by kind and by that count below, and
    # per relation for the spread (is a wrong answer a relation not
    # learnt?). The count tells a walk from a shortcut: a network that
    # finds the last edge by its label alone is right whenever one edge
    # carries it, and splits its read between them otherwise.
    def group(position, target, description):
      last = task.relations[target[1]][-1]
      shared = sum(label == last for _, label, _ in description)
      return kinds[target[1]], target[1], shared
  else:
    group = lambda position, target, description: (
        f"step {position} of the walk")
  total: Dict[str, Any] = {}
  done = 0
  while done < episodes:
    size = min(50, episodes - done)
    batch = task.evaluation_sample(rng, size)
    _merge_errors(total, answer_errors(ev.logits(batch.inputs), batch,
                                       group))
    done += size
  where = f"lesson {lesson}"
  wrong = total["answers"] - total["right"]

  def row(what, part, whole):
    return {"test": "errors", "task": name, "what": f"{where}: {what}",
            "ours": round(100 * part / whole, 1) if whole else None,
            "paper": "-", "count": whole}

  rows = [row("queries answered exactly", total["queries_right"],
              total["queries"]),
          row("answers right (termination steps apart)", total["right"],
              total["answers"]),
          row("termination steps right", total["terminations_right"],
              total["terminations"])]
  for field, label in enumerate(("source", "edge label", "destination")):
    rows.append(row(f"wrong answers with a wrong {label}",
                    total["wrong_field"][field], wrong))
  rows.append(row("wrong answers naming no node of the graph",
                  total["not_a_node"], wrong))
  groups = total["groups"]
  if name == "inference":
    by_kind = _summed(groups, lambda key: key[0])
    rows += [row(f"answers right at {key}", *by_kind[key])
             for key in sorted(by_kind)]
    by_shared = _summed(groups, lambda key: key[2])
    rows += [row("answers right, the relation's last edge label on "
                 f"{key} edge{'s' if key > 1 else ''} of the graph",
                 *by_shared[key]) for key in sorted(by_shared)]
    rows += _relation_spread(where, name,
                             _summed(groups, lambda key: key[1]))
  else:
    rows += [row(f"answers right at {key}", *groups[key])
             for key in sorted(groups)]
  return rows


def read_rows(run: LoadedRun, rng: np.random.Generator, episodes: int,
              memory_size: Optional[int] = None,
              lesson: Optional[int] = None) -> List[Dict[str, Any]]:
  """Where an inference DNC's heads read, on ``lesson`` (default the one it
  reached; :func:`experiments.graphs.walk_reads.query_reads`), as table
  rows."""
  if run.kind != "dnc":
    raise ValueError(f"test 'reads' needs a DNC run, not {run.kind!r}")
  # pylint: disable-next=g-import-not-at-top
  from experiments.models import recording_dnc
  lesson = lesson or int(run.curriculum.get("lesson", 1))
  task = curriculum.Curriculum(run.task_name, lesson).task(lesson, pad=False)
  record = jax.jit(recording_dnc(run.dnc_config(memory_size)).apply)
  queries = []
  for size in _chunks(range(episodes), 50):
    batch = task.evaluation_sample(rng, len(size))
    _, _, states = record(run.params, batch.inputs)
    queries += walk_reads.query_reads(
        states.access_state.read_weights,
        states.access_state.write_weights[:, :, 0], batch.inputs,
        batch.targets, batch.mask, task.relations)
  return walk_reads.summary_rows(queries, f"lesson {lesson}", run.task_name)


def _summed(groups: Dict[Any, List[int]], key: Callable
            ) -> Dict[Any, List[int]]:
  """``groups`` (``{key: [right, count]}``) summed by ``key(group key)``."""
  out: Dict[Any, List[int]] = {}
  for name, (right, count) in groups.items():
    summed = out.setdefault(key(name), [0, 0])
    summed[0] += right
    summed[1] += count
  return out


def _relation_spread(where: str, name: str,
                     per_relation: Dict[int, List[int]]
                     ) -> List[Dict[str, Any]]:
  """Rows: the worst and the best relation's answers right, and the share
  of relations under 80 %; ``per_relation``: ``{label: [right, count]}``."""
  if not per_relation:
    return []
  accuracy = {label: right / count
              for label, (right, count) in per_relation.items()}
  worst = min(accuracy, key=lambda label: (accuracy[label], label))
  best = max(accuracy, key=lambda label: (accuracy[label], -label))
  under = sum(value < 0.8 for value in accuracy.values())

  def row(what, ours, count):
    return {"test": "errors", "task": name, "what": f"{where}: {what}",
            "ours": round(100 * ours, 1), "paper": "-", "count": count}

  return [
      row(f"answers right, the worst relation ({worst})", accuracy[worst],
          per_relation[worst][1]),
      row(f"answers right, the best relation ({best})", accuracy[best],
          per_relation[best][1]),
      row("relations with under 80% of answers right", under / len(accuracy),
          len(accuracy))]


def evaluate(run: LoadedRun, test: str, episodes: int = 200,
             memory_size: Optional[int] = None, seed: int = 0,
             lesson: Optional[int] = None) -> Dict[str, Any]:
  """The table of ``test`` for ``run``: ``{"rows", "memory_size", ...}``.

  ``lesson`` (``errors`` and ``reads`` only) picks the lesson whose
  episodes are examined instead of the one the run reached.

  Raises:
    ValueError: an unknown test, one that does not fit the run's task, or
      a lesson given to another test or out of the curriculum's range.
  """
  if test not in TESTS:
    raise ValueError(f"unknown test {test!r}; choose from {list(TESTS)}")
  if run.task_name not in TEST_TASKS[test]:
    raise ValueError(f"test {test!r} needs a run of "
                     f"{' or '.join(TEST_TASKS[test])}, but this run "
                     f"trains {run.task_name!r}")
  if lesson is not None:
    if test not in ("errors", "reads"):
      raise ValueError(f"--lesson applies to the errors and reads tests, "
                       f"not {test!r}")
    count = len(curriculum.paper_schedule(run.task_name).lessons)
    if not 1 <= lesson <= count:
      raise ValueError(f"lesson {lesson} is out of range: {run.task_name} "
                       f"has lessons 1-{count}")
  if memory_size is None and run.kind == "dnc" and test in MIN_MEMORY:
    memory_size = max(run.model_record["memory_size"], MIN_MEMORY[test])
  ev = Evaluator(run, memory_size)
  rng = np.random.default_rng([seed, 2016])
  if test == "lessons":
    rows = lesson_rows(ev, rng, episodes)
  elif test == "errors":
    rows = error_rows(ev, rng, episodes, lesson)
  elif test == "reads":
    rows = read_rows(run, rng, episodes, ev.memory_size, lesson)
  else:
    result = (underground_test if test == "underground" else
              family_test)(ev, rng, episodes)
    rows = [{"test": test, "task": run.task_name, "what": result["what"],
             "ours": round(100 * result["right"] / result["count"], 1),
             "paper": PAPER[(test, run.task_name)],
             "count": result["count"], "triples": result["triples"]}]
  return {"test": test, "task": run.task_name, "kind": run.kind,
          "step": run.step, "lesson_reached": run.curriculum.get("lesson"),
          "examples_seen": run.curriculum.get("examples_seen"),
          "memory_size": ev.memory_size, "rows": rows}


def _count(table: Dict[str, Any]) -> str:
  """What a row's count counts: episodes, or (errors, reads) queries and
  answers (each row says which in its text)."""
  return "count" if table["test"] in ("errors", "reads") else "episodes"


def markdown(table: Dict[str, Any]) -> str:
  """The table as Markdown."""
  lines = [f"{table['task']} ({table['kind']}), step {table['step']}, "
           f"lesson reached {table['lesson_reached']}, " +
           (f"memory N = {table['memory_size']}" if table["memory_size"]
            else "no memory"), "",
           f"| test | task | what | ours (%) | paper (%) | {_count(table)} |",
           "|---|---|---|---|---|---|"]
  for row in table["rows"]:
    lines.append(f"| {row['test']} | {row['task']} | {row['what']} | "
                 f"{row['ours']} | {row['paper']} | {row['count']} |")
  return "\n".join(lines) + "\n"


def _run_names(checkpoints: Sequence[str]) -> List[str]:
  """Each run's folder name, or its path where folder names repeat."""
  names = [pathlib.Path(c).name or str(c) for c in checkpoints]
  return (names if len(set(names)) == len(names)
          else [str(c) for c in checkpoints])


def evaluate_runs(runs: Sequence[LoadedRun], names: Sequence[str],
                  test: str, episodes: int = 200,
                  memory_size: Optional[int] = None, seed: int = 0,
                  lesson: Optional[int] = None) -> Dict[str, Any]:
  """``evaluate`` on each run (same test, episodes, seed), aggregated.

  Each row's ``ours`` is the mean over the runs that have that row (all,
  except lessons some runs did not reach) and ``ours_sd`` the sample
  standard deviation (ddof=1, the paper's +- over runs; ``None`` for one
  run); ``per_run`` holds each run's accuracy (``None`` where absent).

  Raises:
    ValueError: runs of different tasks or model kinds (naming the odd
      one), or what ``evaluate`` raises.
  """
  if len(runs) != len(names) or not runs:
    raise ValueError("need one name per run, and at least one run")
  for name, run in zip(names[1:], runs[1:]):
    if (run.task_name, run.kind) != (runs[0].task_name, runs[0].kind):
      raise ValueError(
          f"run {name} trains {run.task_name!r} ({run.kind}) but run "
          f"{names[0]} trains {runs[0].task_name!r} ({runs[0].kind}); "
          "all runs must be of the same task and model kind")
  tables = [evaluate(run, test, episodes, memory_size, seed, lesson)
            for run in runs]
  if test in ("errors", "reads"):
    # Their rows depend on the lesson examined (walk steps, relation
    # lengths), which each row names before its colon.
    examined = [t["rows"][0]["what"].split(":")[0] if t["rows"] else None
                for t in tables]
    for name, table, lesson_seen in zip(names[1:], tables[1:],
                                        examined[1:]):
      if lesson_seen != examined[0]:
        raise ValueError(
            f"run {name} examined {lesson_seen} (reached lesson "
            f"{table['lesson_reached']}) but run {names[0]} "
            f"{examined[0]}: the {test} test compares runs on one lesson "
            "(--lesson picks it)")
  longest = max(tables, key=lambda t: len(t["rows"]))
  rows = []
  for i, template in enumerate(longest["rows"]):
    values = [t["rows"][i]["ours"] if i < len(t["rows"]) else None
              for t in tables]
    present = [v for v in values if v is not None]
    row = dict(template)
    row["ours"] = round(float(np.mean(present)), 1) if present else None
    row["ours_sd"] = (round(float(np.std(present, ddof=1)), 1)
                      if len(present) > 1 else None)
    row["runs"] = len(present)
    row["per_run"] = values
    rows.append(row)
  memory = sorted({t["memory_size"] for t in tables},
                  key=lambda m: (m is None, m))
  return {"test": test, "task": runs[0].task_name, "kind": runs[0].kind,
          "runs": [{"name": name, "step": t["step"],
                    "lesson_reached": t["lesson_reached"],
                    "examples_seen": t["examples_seen"],
                    "ours": [r["ours"] for r in t["rows"]]}
                   for name, t in zip(names, tables)],
          "memory_size": memory[0] if len(memory) == 1 else memory,
          "sd": "sample (ddof=1)", "rows": rows}


def markdown_runs(table: Dict[str, Any]) -> str:
  """An ``evaluate_runs`` table as Markdown: mean +- s.d., then the runs."""
  memory = table["memory_size"]
  lines = [f"{table['task']} ({table['kind']}), {len(table['runs'])} runs, "
           "mean ± s.d. (sample, ddof=1), " +
           (f"memory N = {memory}" if memory else "no memory"), "",
           f"| test | task | what | ours (%) | paper (%) | {_count(table)} "
           "| runs |",
           "|---|---|---|---|---|---|---|"]
  for row in table["rows"]:
    ours = (f"{row['ours']} ± {row['ours_sd']}" if row["ours_sd"] is not None
            else f"{row['ours']}")
    lines.append(f"| {row['test']} | {row['task']} | {row['what']} | "
                 f"{ours} | {row['paper']} | {row['count']} | "
                 f"{row['runs']} |")
  lines += ["", "| run | step | lesson reached | ours (%) |",
            "|---|---|---|---|"]
  for run in table["runs"]:
    lines.append(f"| {run['name']} | {run['step']} | "
                 f"{run['lesson_reached']} | "
                 f"{', '.join(str(v) for v in run['ours'])} |")
  return "\n".join(lines) + "\n"


def eval_main(argv: Optional[List[str]] = None) -> int:
  parser = argparse.ArgumentParser(prog="dnc-graph-eval",
                                   description=__doc__.split("\n\n")[0])
  parser.add_argument("--checkpoint", required=True,
                      help="a dnc-graph-train run folder (or a "
                      "parameters-only copy); several, comma-separated, "
                      "for mean ± s.d. over runs of one task")
  parser.add_argument("--test", required=True, choices=TESTS)
  parser.add_argument("--episodes", type=int, default=200,
                      help="episodes (underground traversal, lessons, "
                      "errors)")
  parser.add_argument("--memory-size", type=int, default=None,
                      help="memory slots N at test time (default: the "
                      "run's, at least 256 Underground / 128 family)")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--lesson", type=int, default=None,
                      help="errors, reads: examine this lesson's episodes "
                      "(default: the lesson the run reached)")
  parser.add_argument("--out", default=None,
                      help="folder for the JSON and Markdown tables "
                      "(default: the run folder; required with several "
                      "runs)")
  args = parser.parse_args(argv)
  checkpoints = [c for c in args.checkpoint.split(",") if c]
  if not checkpoints:
    parser.exit(2, "dnc-graph-eval: error: --checkpoint names no run\n")
  if len(checkpoints) > 1 and not args.out:
    parser.exit(2, "dnc-graph-eval: error: several runs need --out (a "
                "folder for the aggregated table)\n")
  if args.episodes < 1:
    parser.exit(2, f"dnc-graph-eval: error: --episodes must be >= 1, got "
                f"{args.episodes}\n")
  if args.memory_size is not None and args.memory_size < 1:
    parser.exit(2, f"dnc-graph-eval: error: --memory-size must be >= 1, "
                f"got {args.memory_size}\n")
  try:
    if len(checkpoints) == 1:
      run = load_run(checkpoints[0])
      table = evaluate(run, args.test, args.episodes, args.memory_size,
                       args.seed, args.lesson)
    else:
      names = _run_names(checkpoints)
      runs = []
      for name, checkpoint in zip(names, checkpoints):
        try:
          runs.append(load_run(checkpoint))
        except (CheckpointError, ValueError, KeyError) as error:
          raise ValueError(f"run {name}: {error}") from error
      table = evaluate_runs(runs, names, args.test, args.episodes,
                            args.memory_size, args.seed, args.lesson)
    out = pathlib.Path(args.out or checkpoints[0])
    make_run_folder(out)
  except (CheckpointError, ValueError, KeyError) as error:
    parser.exit(2, f"dnc-graph-eval: error: {error}\n")
  text = markdown(table) if len(checkpoints) == 1 else markdown_runs(table)
  (out / f"graph-{args.test}.json").write_text(json.dumps(table, indent=2))
  (out / f"graph-{args.test}.md").write_text(text)
  print(text, end="")
  return 0


# --- Pictures (Fig. 3) and the learning curve. ----------------------------

def record_episode(run: LoadedRun, batch, example: int = 0,
                   memory_size: Optional[int] = None) -> Dict[str, Any]:
  """One episode's write weights, read modes and phases (a DNC run)."""
  # pylint: disable-next=g-import-not-at-top
  from experiments.models import recording_dnc
  config = run.dnc_config(memory_size)
  logits, interface, states = jax.jit(recording_dnc(config).apply)(
      run.params, batch.inputs)
  inputs = np.asarray(batch.inputs[:, example])
  mask = np.asarray(batch.mask[:, example])
  end = int(np.nonzero(mask)[0].max()) + 1
  pulses = np.nonzero(inputs[:, 90] > 0)[0]
  description_end = int(pulses[0]) if len(pulses) else end
  answer = np.nonzero(inputs[:end, 91] > 0)[0]
  return {
      "inputs": inputs[:end], "mask": mask[:end],
      "description_end": description_end, "answer_steps": answer,
      "write_weights": np.asarray(
          states.access_state.write_weights[:end, example, 0]),
      "read_modes": (None if interface.read_modes is None else
                     np.asarray(interface.read_modes[:end, example])),
      "logits": np.asarray(logits[:end, example])}


def plot_episode(rec: Dict[str, Any], path, title: str = ""):
  """Fig. 3 style: write weights over the description (each slot labelled
  with the triple written to it) and read modes per head over the
  answer."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  d = rec["description_end"]
  writes = rec["write_weights"][:d]  # [T_d, N]
  triples = [encoding.decode_triple(x) for x in rec["inputs"][:d]]
  slots = writes.shape[1]
  labels = []
  for slot in range(slots):
    t = int(np.argmax(writes[:, slot])) if d else 0
    labels.append("%d-%d-%d" % triples[t] if d and writes[t, slot] > 0.1
                  else "")
  modes = rec["read_modes"]
  heads = 0 if modes is None else modes.shape[1]
  fig, axes = plt.subplots(1, 1 + heads, figsize=(5 + 3 * heads,
                                                  max(4, slots * 0.14)),
                           squeeze=False)
  ax = axes[0, 0]
  ax.imshow(writes.T, aspect="auto", cmap="Greys", vmin=0, vmax=1,
            interpolation="nearest")
  ax.set_title("write weighting (description)")
  ax.set_xlabel("description step")
  ax.set_yticks(range(slots))
  ax.set_yticklabels(labels, fontsize=5)
  ax.set_ylabel("slot: triple written")
  answer = rec["answer_steps"]
  for head in range(heads):
    ax = axes[0, 1 + head]
    values = modes[answer, head] if len(answer) else modes[:0, head]
    ax.imshow(values.T, aspect="auto", cmap="viridis", vmin=0, vmax=1,
              interpolation="nearest")
    width = values.shape[1]
    names = (["backward"] * ((width - 1) // 2) + ["content"] +
             ["forward"] * ((width - 1) // 2))
    ax.set_yticks(range(width))
    ax.set_yticklabels(names)
    ax.set_xlabel("answer step")
    ax.set_title(f"read head {head + 1} modes (answer)")
  fig.suptitle(title)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return path


def read_metrics(run_dir) -> List[Dict[str, Any]]:
  """The run's ``metrics.jsonl`` lines (``[]`` if none)."""
  path = pathlib.Path(run_dir) / "metrics.jsonl"
  if not path.is_file():
    return []
  return [json.loads(line) for line in path.read_text().splitlines()
          if line.strip()]


def stitch_stages(folders: Sequence) -> List[Dict[str, Any]]:
  """One metrics list for a run trained in consecutive stages.

  Each stage after the first started from the one before with
  ``--init-from`` (its ``settings.json`` records the step it started
  from); a stage's lines after that step are dropped, and each stage's
  steps and examples seen continue where the previous stage's parameters
  were taken. Train lines get ``examples_seen`` (steps × that stage's
  batch size), so the curve's x axis stays right when batch sizes differ.

  Raises:
    ValueError: a folder without ``metrics.jsonl`` or ``settings.json``,
      or a later stage without an ``--init-from`` record.
  """
  stages = []
  for folder in folders:
    folder = pathlib.Path(folder)
    metrics = read_metrics(folder)
    settings_file = folder / "settings.json"
    if not metrics or not settings_file.is_file():
      raise ValueError(f"{folder}: a stage needs metrics.jsonl and "
                       "settings.json")
    settings = json.loads(settings_file.read_text())["settings"]
    stages.append((folder, metrics, settings))
  out: List[Dict[str, Any]] = []
  steps = examples = 0
  for i, (folder, metrics, settings) in enumerate(stages):
    end = None
    if i + 1 < len(stages):
      source = stages[i + 1][2].get("init_from") or {}
      if "step" not in source:
        raise ValueError(f"{stages[i + 1][0]} was not started with "
                         f"--init-from (from {folder})")
      end = int(source["step"])
    batch = int(settings["loop"]["batch_size"])
    for line in metrics:
      if end is not None and line["step"] > end:
        continue
      line = dict(line, step=line["step"] + steps)
      if "valid/examples_seen" in line:
        line["valid/examples_seen"] += examples
      if line.get("kind") == "train":
        line["examples_seen"] = examples + (line["step"] - steps) * batch
      out.append(line)
    last = end if end is not None else max(m["step"] for m in metrics)
    steps += last
    examples += last * batch
  return out


def plot_curve(metrics: List[Dict[str, Any]], path, title: str = "",
               threshold: float = 0.9):
  """Evaluation accuracy and lesson (top) and training loss (bottom)
  against examples seen."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  from matplotlib.ticker import MaxNLocator
  evals = [m for m in metrics if m.get("kind") == "eval"
           and "valid/accuracy" in m]
  if not evals:
    raise ValueError("no evaluations in metrics.jsonl to plot")
  x = [m["valid/examples_seen"] for m in evals]
  per_step = x[-1] / max(evals[-1]["step"], 1)
  train = [m for m in metrics if m.get("kind") == "train" and "loss" in m]
  fig, (ax, low) = plt.subplots(2, 1, figsize=(7, 6), sharex=True)
  ax.plot(x, [100 * m["valid/accuracy"] for m in evals], "o-", ms=3,
          label="accuracy on the current lesson")
  ax.axhline(100 * threshold, color="grey", ls=":", label="pass mark")
  ax.set_ylabel("accuracy (%)")
  ax.set_ylim(-2, 102)
  twin = ax.twinx()
  lessons = [m["valid/lesson"] for m in evals]
  twin.step(x, lessons, "r-", where="post", label="lesson")
  twin.set_ylabel("lesson", color="r")
  twin.set_ylim(0.5, max(lessons) + 1.5)
  twin.yaxis.set_major_locator(MaxNLocator(integer=True))
  ax.legend(loc="upper left", fontsize=8)
  ax.set_title(title)
  if train:
    low.plot([m.get("examples_seen", m["step"] * per_step) for m in train],
             [m["loss"] for m in train], lw=0.8)
  low.set_ylabel("training loss (per episode)")
  low.set_xlabel("training examples seen")
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return path


def untrained_run(task_name: str, lesson: int = 1) -> LoadedRun:
  """A tiny untrained DNC as a run (for CI pictures)."""
  graph.check_task(task_name)
  record = graph.model_config("dnc", dict(hidden_size=16, memory_size=48,
                                          word_size=8, num_reads=2))
  model = graph.make_model("dnc", record)
  task = graph.make_task(task_name, graph.GraphConfig(lesson=lesson))
  params = model.init(jax.random.PRNGKey(0),
                      task.sample(np.random.default_rng(0), 1).inputs)
  return LoadedRun(task_name, "dnc", record, params,
                   task.curriculum_state(), 0,
                   {"graph_task": task_name, "kind": "dnc", "model": record})


def plot_main(argv: Optional[List[str]] = None) -> int:
  parser = argparse.ArgumentParser(
      prog="dnc-graph-plot", description="Fig. 3-style pictures of a graph "
      "run (write weights labelled with triples, read modes) and its "
      "learning curve.")
  source = parser.add_mutually_exclusive_group(required=True)
  source.add_argument("--checkpoint", help="a dnc-graph-train run folder")
  source.add_argument("--untrained", choices=graph.TASKS,
                      help="draw a tiny untrained DNC instead")
  parser.add_argument("--lesson", type=int, default=None,
                      help="lesson of the episode drawn (default: the "
                      "run's current)")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--out", default=None,
                      help="folder for the PNGs (default: the run folder)")
  parser.add_argument("--stages", default=None, metavar="DIR,DIR,...",
                      help="draw the learning curve from these stage "
                      "folders (metrics.jsonl + settings.json), each "
                      "started with --init-from the one before, joined "
                      "end to end, instead of the run's own metrics")
  args = parser.parse_args(argv)
  try:
    run = (load_run(args.checkpoint) if args.checkpoint else
           untrained_run(args.untrained))
    stage_metrics = (stitch_stages(
        [d for d in args.stages.split(",") if d]) if args.stages else None)
    if run.kind != "dnc" and args.lesson:
      raise ValueError("an LSTM run has no memory to draw (--lesson picks "
                       "the episode of the memory picture)")
    lesson = args.lesson or int(run.curriculum.get("lesson", 1))
    task = curriculum.Curriculum(run.task_name, lesson).task(pad=False)
    out = pathlib.Path(args.out or args.checkpoint)
    make_run_folder(out)
  except (CheckpointError, ValueError, KeyError) as error:
    parser.exit(2, f"dnc-graph-plot: error: {error}\n")
  if run.kind == "dnc":
    batch = task.sample(np.random.default_rng(args.seed), 1)
    if run.task_name == "shortest_path":
      batch = graph_tasks.GraphBatch(batch.inputs, batch.targets, batch.mask)
    rec = record_episode(run, batch)
    print(plot_episode(
        rec, out / f"memory-{run.task_name}-lesson{lesson}.png",
        title=f"{run.task_name}, lesson {lesson}, step {run.step}"))
  else:
    print("an LSTM run has no memory to draw: the learning curve only")
  metrics = stage_metrics or read_metrics(
      out if args.checkpoint is None else args.checkpoint)
  if any(m.get("kind") == "eval" for m in metrics):
    threshold = curriculum.paper_schedule(run.task_name).threshold
    print(plot_curve(metrics, out / "learning-curve.png",
                     title=f"{run.task_name} ({run.kind})",
                     threshold=threshold))
  else:
    print("no evaluations in the run's metrics yet: no learning curve")
  return 0


# --- Memory resized at test time (Extended Data Fig. 2). ------------------

def memory_sweep(run: LoadedRun, memory_sizes: Sequence[int],
                 nodes: Sequence[int], out_degree: int = 3,
                 length: int = 1, episodes: int = 50, seed: int = 0
                 ) -> Dict[str, Any]:
  """Traversal accuracy with N slots (same parameters) on graphs of
  ``nodes`` nodes and ``out_degree`` out-edges (``nodes * out_degree``
  triples); ``{"accuracy": [len(memory_sizes), len(nodes)], ...}``."""
  if run.task_name != "traversal" or run.kind != "dnc":
    raise ValueError(f"memory resizing needs a DNC traversal run, got "
                     f"{run.kind} {run.task_name}")
  accuracy = np.zeros((len(memory_sizes), len(nodes)))
  for i, n_slots in enumerate(memory_sizes):
    ev = Evaluator(run, n_slots)
    for j, n in enumerate(nodes):
      k = min(out_degree, n - 1)
      task = graph_tasks.Traversal(Lesson((n, n), (k, k), (length, length)))
      rng = np.random.default_rng([seed, n])  # Same graphs for every N.
      accuracy[i, j] = task.evaluate(ev.logits, rng, episodes, 50)
  return {"memory_sizes": list(memory_sizes), "nodes": list(nodes),
          "triples": [n * min(out_degree, n - 1) for n in nodes],
          "out_degree": out_degree, "length": length,
          "episodes": episodes, "trained_memory_size":
          run.model_record["memory_size"], "accuracy": accuracy.tolist()}


def plot_sweep(sweep: Dict[str, Any], path):
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  acc = 100 * np.asarray(sweep["accuracy"])
  fig, ax = plt.subplots(figsize=(6, 4))
  image = ax.imshow(acc, origin="lower", cmap="magma", vmin=0, vmax=100,
                    aspect="auto")
  ax.set_xticks(range(len(sweep["triples"])))
  ax.set_xticklabels(sweep["triples"])
  ax.set_yticks(range(len(sweep["memory_sizes"])))
  ax.set_yticklabels(sweep["memory_sizes"])
  ax.set_xlabel("triples in the graph")
  ax.set_ylabel("memory slots N at test time")
  for i in range(acc.shape[0]):
    for j in range(acc.shape[1]):
      ax.text(j, i, f"{acc[i, j]:.0f}", ha="center", va="center",
              color="w" if acc[i, j] < 60 else "k", fontsize=7)
  fig.colorbar(image, label="accuracy (%)")
  ax.set_title(f"traversal, trained with N = "
               f"{sweep['trained_memory_size']}")
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return path


def _ints(text: str) -> List[int]:
  try:
    values = [int(x) for x in text.split(",") if x]
  except ValueError:
    raise argparse.ArgumentTypeError(
        f"expected comma-separated integers, got {text!r}") from None
  if not values or min(values) < 2:
    raise argparse.ArgumentTypeError(f"expected integers >= 2, got {text!r}")
  return values


def memory_main(argv: Optional[List[str]] = None) -> int:
  parser = argparse.ArgumentParser(
      prog="dnc-graph-memory", description="Traversal accuracy with the "
      "memory resized at test time against the graph's triples (Extended "
      "Data Fig. 2): a heat map PNG and JSON.")
  parser.add_argument("--checkpoint", required=True)
  parser.add_argument("--memory-sizes", type=_ints,
                      default=[16, 32, 64, 128, 256])
  parser.add_argument("--nodes", type=_ints, default=[4, 6, 8, 10, 20, 40])
  parser.add_argument("--out-degree", type=int, default=3)
  parser.add_argument("--length", type=int, default=1)
  parser.add_argument("--episodes", type=int, default=50)
  parser.add_argument("--out", default=None)
  args = parser.parse_args(argv)
  try:
    run = load_run(args.checkpoint)
    sweep = memory_sweep(run, args.memory_sizes, args.nodes, args.out_degree,
                         args.length, args.episodes)
    out = pathlib.Path(args.out or args.checkpoint)
    make_run_folder(out)
  except (CheckpointError, ValueError, KeyError) as error:
    parser.exit(2, f"dnc-graph-memory: error: {error}\n")
  (out / "memory-resize.json").write_text(json.dumps(sweep, indent=2))
  print(plot_sweep(sweep, out / "memory-resize.png"))
  return 0


if __name__ == "__main__":
  sys.exit(eval_main())
