"""Graph curricula: the paper's tables, pass rule, mixing, exact resume."""

import json

import numpy as np
import pytest

from experiments.graphs import curriculum
from experiments.graphs import encoding
from experiments.graphs.curriculum import Curriculum, Schedule
from experiments.graphs.tasks import Lesson


def test_tables_match_extended_data_tables():
  # Rows copied by hand from Extended Data Tables 3-5 (PROTOCOL §1.9-1.11).
  t, i, s = (curriculum.TRAVERSAL, curriculum.INFERENCE,
             curriculum.SHORTEST_PATH)
  assert (len(t), len(i), len(s)) == (14, 17, 15)
  assert t[0] == Lesson((3, 10), (2, 4), (1, 1))
  assert t[8] == Lesson((10, 30), (2, 4), (1, 6))
  assert t[12] == Lesson((10, 40), (2, 6), (1, 10))
  assert t[13] == Lesson((10, 40), (2, 6), (1, 20))
  assert i[0] == Lesson((3, 3), (2, 2), (2, 2), 3)
  assert i[6] == Lesson((4, 6), (2, 4), (2, 3), 3)
  assert i[16] == Lesson((20, 25), (2, 4), (2, 5), 3)
  assert all(l.queries == 3 for l in i)
  assert s[0] == Lesson((5, 10), (1, 2), (2, 2))
  assert s[4] == Lesson((10, 20), (1, 3), (2, 3))
  assert s[14] == Lesson((20, 25), (2, 6), (2, 5))
  assert [curriculum.paper_schedule(n).threshold for n in
          ("traversal", "inference", "shortest_path")] == [0.9, 0.9, 0.8]
  assert curriculum.paper_schedule("shortest_path").mix == 0
  assert curriculum.paper_schedule("shortest_path").eval_episodes == 50


def oracle(inputs):
  """A correct predictor for one-edge traversals, written from the inputs.

  Looks up the queried (source, edge) among the description triples.
  """
  t_max, batch, _ = inputs.shape
  logits = np.zeros((t_max, batch, 90), np.float32)
  for b in range(batch):
    links, answer = {}, []
    for t in range(t_max):
      x = inputs[t, b]
      s, e, d = encoding.decode_triple(x)
      if x[encoding.ANSWER_CHANNEL]:
        answer.append(t)
      elif x[encoding.PHASE_CHANNEL]:
        query = (s, e)
      elif d != encoding.BLANK:
        links[(s, e)] = d
    triple = query + (links[query],)
    logits[answer[0], b] = encoding.encode_triple(triple)
    logits[answer[1], b] = encoding.encode_triple(encoding.TERMINATION)
  return logits


def test_miniature_curriculum_advances_with_a_correct_predictor():
  c = Curriculum("traversal", schedule=curriculum.MINIATURE)
  rng = np.random.default_rng(0)
  wrong = lambda inputs: np.zeros(inputs.shape[:2] + (90,), np.float32)
  record = c.evaluate(wrong, rng)
  assert record["accuracy"] == 0 and not record["advanced"]
  assert c.lesson == 1
  record = c.evaluate(oracle, rng)
  assert record == {"lesson": 1, "accuracy": 1.0, "passed": True,
                    "advanced": True, "examples_seen": 0}
  assert c.lesson == 2
  record = c.evaluate(oracle, rng)
  assert record["passed"] and not record["advanced"]  # last lesson stays
  assert c.lesson == 2
  assert [r["lesson"] for r in c.history] == [1, 1, 2]


def test_threshold_is_inclusive_and_results_are_checked():
  c = Curriculum("inference")
  assert not c.after_evaluation({"accuracy": 0.89})["advanced"]
  assert c.after_evaluation({"accuracy": 0.9})["advanced"]
  assert c.lesson == 2
  with pytest.raises(ValueError, match="accuracy"):
    c.after_evaluation({"error": 0.1})


def test_mixing_draws_earlier_lessons_uniformly_ten_percent():
  c = Curriculum("traversal", lesson=5)
  lessons = c.lesson_of_examples(np.random.default_rng(1), 40000)
  earlier = lessons < 5
  assert abs(earlier.mean() - 0.1) < 5 * np.sqrt(0.09 / 40000)
  counts = np.bincount(lessons[earlier], minlength=5)[1:]
  assert np.all(np.abs(counts / earlier.sum() - 0.25) < 0.03)
  assert set(lessons[~earlier]) == {5}
  first = Curriculum("traversal").lesson_of_examples(
      np.random.default_rng(1), 1000)
  assert np.all(first == 1)
  sp = Curriculum("shortest_path", lesson=9)
  assert np.all(sp.lesson_of_examples(np.random.default_rng(1), 1000) == 9)


def test_mixed_batches_contain_earlier_lesson_episodes():
  schedule = Schedule((Lesson((2, 2), (1, 1), (1, 1)),
                       Lesson((6, 6), (1, 1), (1, 1))), 0.9, 0.5, 1, 10)
  c = Curriculum("traversal", lesson=2, schedule=schedule)
  batch = c.sample(np.random.default_rng(2), 64)
  assert batch.inputs.shape[0] == c.max_time
  # Description lengths (steps before the first phase pulse): 2 or 6.
  pulses = batch.inputs[:, :, encoding.PHASE_CHANNEL].argmax(0)
  assert set(pulses.tolist()) == {2, 6}
  assert 16 < np.sum(pulses == 2) < 48
  assert c.examples_seen == 64


def test_state_round_trips_through_json_and_resumes_exactly():
  def run(c, steps):
    batches = []
    for step in steps:
      rng = np.random.default_rng([7, step])
      batches.append(c.sample(rng, 4))
      if step == 3:
        c.after_evaluation({"accuracy": 0.95})
    return batches

  straight = Curriculum("traversal", lesson=2)
  expected = run(straight, range(8))
  first = Curriculum("traversal", lesson=2)
  run(first, range(5))
  state = json.loads(json.dumps(first.curriculum_state()))
  resumed = Curriculum("traversal")
  resumed.restore_curriculum(state)
  assert resumed.lesson == 3 and resumed.examples_seen == 20
  assert resumed.history == first.history
  for a, b in zip(run(resumed, range(5, 8)), expected[5:]):
    for x, y in zip(a, b):
      np.testing.assert_array_equal(x, y)
  assert resumed.curriculum_state() == straight.curriculum_state()


@pytest.mark.parametrize("lesson", [0, 15, -1, 2.0])
def test_lesson_out_of_range_raises(lesson):
  with pytest.raises(ValueError, match="out of range"):
    Curriculum("traversal", lesson=lesson)


def test_unknown_task_and_foreign_state_raise():
  with pytest.raises(ValueError, match="'sorting'"):
    Curriculum("sorting")
  with pytest.raises(ValueError, match="'sorting'"):
    curriculum.paper_schedule("sorting")
  c = Curriculum("inference")
  with pytest.raises(ValueError, match="traversal"):
    c.restore_curriculum(Curriculum("traversal").curriculum_state())
  with pytest.raises(ValueError, match="out of range"):
    c.restore_curriculum(dict(c.curriculum_state(), lesson=18))
  with pytest.raises(ValueError, match="does not mix"):
    Curriculum("shortest_path",
               schedule=Schedule(curriculum.SHORTEST_PATH, 0.8, 0.1, 1, 1))
