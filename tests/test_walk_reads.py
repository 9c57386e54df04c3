"""Where the read heads look on an inference query (walk_reads), on read
and write weightings set by hand."""

import numpy as np
import pytest

from experiments import graph_eval
from experiments.graphs import curriculum, encoding, walk_reads

walk_edges = walk_reads.walk_edges


def test_walk_edges_follows_labels_from_the_start():
  description = [(1, 3, 2), (2, 5, 7), (1, 5, 9), (7, 3, 1)]
  assert walk_edges(description, 1, (3, 5)) == [0, 1]
  assert walk_edges(description, 1, (3, 5, 3)) == [0, 1, 3]
  assert walk_edges(description, 1, (5,)) == [2]
  assert walk_edges(description, 1, (4,)) is None  # No such edge.
  assert walk_edges(description, 9, (3,)) is None  # A dead end.


def _layout(batch, b):
  """Description length and, per query, its answer step (from the mask)."""
  flags = np.asarray(batch.inputs)[:, b, encoding.TRIPLE_SIZE]
  steps = np.nonzero(np.asarray(batch.mask)[:, b])[0]
  answers = [int(r[0]) for r in
             np.split(steps, np.nonzero(np.diff(steps) > 1)[0] + 1)]
  return int(np.nonzero(flags)[0][0]), answers


def test_query_reads_measures_the_walk_edges_by_hand():
  task = curriculum.Curriculum("inference", 1).task(1, pad=False)
  batch = task.sample(np.random.default_rng(4), 2)
  time, size = batch.mask.shape
  slots, heads = 32, 2
  write = np.zeros((time, size, slots), np.float32)
  read = np.zeros((time, size, heads, slots), np.float32)
  for b in range(size):
    described, _ = _layout(batch, b)
    for t in range(described):  # Triple t written to slot 2t + 1.
      write[t, b, 2 * t + 1] = 1.0
  described, answers = _layout(batch, 0)
  inputs = np.asarray(batch.inputs)
  graph = [tuple(encoding.decode_triple(inputs[t, 0]))
           for t in range(described)]
  start, relation, _ = encoding.decode_triple(batch.targets[answers[0], 0])
  first, second = walk_edges(graph, start, task.relations[relation])
  other = next(i for i in range(described) if i not in (first, second))
  answer = answers[0]
  # Episode 0, query 1: a planning step reads edge 1 (0.4) and another
  # triple (0.2) with head 0; the answer step reads edge 2 (0.7) with
  # head 1 and a slot holding no triple (0.3, slot 0).
  read[answer - 3, 0, 0, 2 * first + 1] = 0.4
  read[answer - 3, 0, 0, 2 * other + 1] = 0.2
  read[answer, 0, 1, 2 * second + 1] = 0.7
  read[answer, 0, 1, 0] = 0.3
  # Head 0 holds edge 1 at the answer step too (each edge its own head),
  # and the query step's reads (one pulse before the planning steps) are
  # not planning.
  read[answer, 0, 0, 2 * first + 1] = 0.5
  read[answer - 11, 0, 0, 2 * first + 1] = 1.0
  got = walk_reads.query_reads(read, write, batch.inputs, batch.targets,
                               batch.mask, task.relations)
  assert len(got) == 2 * 3  # Three queries per lesson-1 episode.
  one = got[0]
  # Ten planning steps, one of them with 0.6 on the graph's triples.
  assert one["planning_on_graph"] == pytest.approx(0.06)
  assert one["answer_on_graph"] == pytest.approx(0.7)  # Head 1's total.
  np.testing.assert_allclose(one["answer_on_edge"], [0.5, 0.7])
  np.testing.assert_allclose(one["peak_on_edge"], [0.5, 0.7])
  for other_query in got[1:]:
    assert other_query["answer_on_graph"] == 0.0
  rows = walk_reads.summary_rows(got, "lesson 1")
  by_what = {r["what"]: r["ours"] for r in rows}
  assert by_what["lesson 1: answer step, the most any head puts on "
                 "edge 2 of the walk"] == round(100 * 0.7 / 6, 1)
  assert by_what["lesson 1: planning and answer steps, the most any head "
                 "puts on edge 1 of the walk"] == round(100 * 0.5 / 6, 1)
  assert all(r["count"] == 6 for r in rows)
  assert walk_reads.summary_rows([], "lesson 1") == []


def test_reads_test_of_the_eval_command_on_an_untrained_dnc():
  table = graph_eval.evaluate(graph_eval.untrained_run("inference"),
                              "reads", episodes=4)
  assert table["test"] == "reads" and len(table["rows"]) == 6
  assert all(r["count"] == 12 for r in table["rows"])
  assert all(0 <= r["ours"] <= 100 for r in table["rows"])
  with pytest.raises(ValueError, match="'reads' needs a run of inference"):
    graph_eval.evaluate(graph_eval.untrained_run("traversal"), "reads")


def test_errors_and_reads_take_a_lesson_other_than_the_one_reached():
  run = graph_eval.untrained_run("inference", lesson=2)
  table = graph_eval.evaluate(run, "errors", episodes=4, lesson=1)
  assert all(r["what"].startswith("lesson 1:") for r in table["rows"])
  table = graph_eval.evaluate(run, "reads", episodes=4)
  assert all(r["what"].startswith("lesson 2:") for r in table["rows"])
  with pytest.raises(ValueError, match="lesson 99 is out of range"):
    graph_eval.evaluate(run, "reads", episodes=4, lesson=99)
  with pytest.raises(ValueError, match="applies to the errors and reads"):
    graph_eval.evaluate(run, "lessons", episodes=4, lesson=1)


def test_several_runs_are_compared_on_one_lesson():
  runs = [graph_eval.untrained_run("inference", lesson=1),
          graph_eval.untrained_run("inference", lesson=2)]
  for test in ("errors", "reads"):
    with pytest.raises(ValueError, match="compares runs on one lesson"):
      graph_eval.evaluate_runs(runs, ["a", "b"], test, episodes=4)
    # On a lesson named for both, the tables line up (the rows naming the
    # worst and best relation may name different relations per run).
    table = graph_eval.evaluate_runs(runs, ["a", "b"], test, episodes=4,
                                     lesson=1)
    assert all(r["what"].startswith("lesson 1:") for r in table["rows"])
