"""Mini-SHRDLU curriculum: Table 6 as data, advancing, mixing, JSON."""

import json

import jax
import numpy as np
import pytest

from experiments.shrdlu import curriculum
from experiments.shrdlu.env import Lesson


def test_table_6_staircase():
  lessons = curriculum.LESSONS
  assert len(lessons) == 26
  assert lessons[0] == Lesson((2, 2), (3, 3), (1, 1), (1, 1))
  assert lessons[-1] == Lesson((10, 10), (6, 6), (1, 6), (1, 7))
  for a, b in zip(lessons[:24], lessons[1:25]):  # Never easier.
    for field in ("goals", "blocks", "constraints", "depth"):
      assert getattr(b, field) >= getattr(a, field), (a, b)
  assert curriculum.lesson_table(lessons).shape == (26, 8)


def _mini(**kwargs):
  lessons = (Lesson((1, 1), (3, 3), (1, 1), (1, 1)),
             Lesson((2, 2), (3, 3), (1, 1), (1, 1)))
  return curriculum.Curriculum(lessons=lessons, window=4, **kwargs)


def test_advances_on_a_miniature_lesson():
  c = _mini(threshold=0.75)
  assert not c.evaluate(step=1)          # Window not full.
  c.record([0, 0, 0], [1.0, 1.0, 0.0])
  c.record([1, 1], [1.0, 1.0])           # Other lessons do not count.
  assert c.score() is None and not c.evaluate(step=2)
  c.record([0], [0.5])                   # Mean 0.625 < 0.75.
  assert c.score() == pytest.approx(0.625) and not c.evaluate(step=3)
  c.record([0, 0], [1.0, 1.0])           # Window: 0, 0.5, 1, 1.
  assert not c.evaluate(step=4)
  c.record([0], [1.0])                   # Window: 0.5, 1, 1, 1 -> 0.875.
  assert c.evaluate(step=5) and c.lesson == 1 and c.scores == []
  assert c.history == [dict(lesson=0, step=5, score=0.875)]
  c.record([1] * 4, [1.0] * 4)
  assert c.final and not c.evaluate(step=6)  # The final lesson never ends.


def test_json_round_trip():
  c = _mini()
  c.record([0, 0], [0.25, 1.0])
  data = json.loads(json.dumps(c.to_json()))
  assert curriculum.Curriculum.from_json(data) == c


def test_mixing_earlier_lessons():
  key = jax.random.PRNGKey(0)
  ids = np.asarray(curriculum.sample_lessons(key, 0, 1000, 0.1))
  assert (ids == 0).all()
  ids = np.asarray(curriculum.sample_lessons(key, 5, 4000, 0.1))
  assert ids.max() == 5 and 0.07 < (ids < 5).mean() < 0.13
  assert set(np.unique(ids[ids < 5])) == {0, 1, 2, 3, 4}


def test_bad_curriculum_configs():
  with pytest.raises(ValueError, match="threshold"):
    _mini(threshold=1.5)
  with pytest.raises(ValueError, match="lesson"):
    _mini(lesson=2)
  with pytest.raises(ValueError, match="goals"):
    Lesson((0, 1), (3, 3), (1, 1), (1, 1))
  with pytest.raises(ValueError, match="constraints"):
    Lesson((1, 1), (3, 3), (1, 7), (1, 1))
