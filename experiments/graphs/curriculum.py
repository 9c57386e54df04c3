"""Graph curricula (Extended Data Tables 3-5) as data, and a Curriculum.

The tables hold (nodes, out-degree, length[, queries]) per lesson, exactly
as printed (PROTOCOL §1.9-1.11), including the repeated rows (inference
lessons 3/4 and 10/11, shortest-path lessons 10/11), kept as printed: a
repeated lesson is simply passed twice.

:class:`Curriculum` follows PROTOCOL §1.8. Choices (also in README.md):

* Pass rule: an evaluation on a fresh batch of the *current* lesson (no
  mixing, modal predictions) passes at >= the threshold: 90% of episodes
  with every target right (traversal, inference); 80% of 50 episodes whose
  network-only path is a shortest path (shortest path: the Table 5
  caption's definition; ``ShortestPath(slack=1)`` gives the Methods'
  "at most one step longer" reading).
* Mixing: for traversal and inference, each example independently (a
  Bernoulli(0.1) coin per example, so batches of 2 mix too) comes from an
  earlier lesson; "uniformly from earlier lessons" is read as an earlier
  lesson chosen uniformly, then an example from it. Shortest path never
  mixes. Mixed examples are padded to the longest lesson so far, so a batch
  has one static length per lesson.
* Evaluation cadence (every 100 / 2,000 batches) and batch size (NOT
  STATED for traversal and inference; 100 chosen; 50 for shortest path) are
  attributes the trainer reads; the Curriculum only judges results.
* The last lesson never completes: passing it is recorded in the history
  (``passed``) but the lesson stays.

Exact resume: the state (lesson, examples seen, history) is JSON-able; the
samples are a pure function of (state's lesson, the generator), so with the
trainer's per-step generator (``default_rng([seed, step])``) a restored run
draws the same future samples as an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Dict, List, Optional, Tuple

import numpy as np

from experiments.graphs import tasks
from experiments.graphs.tasks import Lesson

# Extended Data Table 3: (nodes, out-degree, path length).
TRAVERSAL = tuple(Lesson(n, k, p) for n, k, p in (
    ((3, 10), (2, 4), (1, 1)),
    ((3, 10), (2, 4), (1, 2)),
    ((5, 10), (2, 4), (1, 3)),
    ((5, 10), (2, 4), (1, 4)),
    ((10, 15), (2, 4), (1, 4)),
    ((10, 15), (2, 4), (1, 5)),
    ((10, 20), (2, 4), (1, 5)),
    ((10, 20), (2, 4), (1, 6)),
    ((10, 30), (2, 4), (1, 6)),
    ((10, 30), (2, 4), (1, 7)),
    ((10, 30), (2, 4), (1, 8)),
    ((10, 30), (2, 4), (1, 9)),
    ((10, 40), (2, 6), (1, 10)),
    ((10, 40), (2, 6), (1, 20)),
))

# Extended Data Table 4: (nodes, out-degree, relation length), 3 queries.
INFERENCE = tuple(Lesson(n, k, r, 3) for n, k, r in (
    ((3, 3), (2, 2), (2, 2)),
    ((3, 5), (2, 2), (2, 2)),
    ((4, 6), (2, 4), (2, 2)),
    ((4, 6), (2, 4), (2, 2)),
    ((6, 12), (2, 4), (2, 2)),
    ((12, 18), (2, 4), (2, 2)),
    ((4, 6), (2, 4), (2, 3)),
    ((6, 12), (2, 4), (2, 3)),
    ((12, 18), (2, 4), (2, 3)),
    ((4, 6), (2, 4), (2, 4)),
    ((4, 6), (2, 4), (2, 4)),
    ((6, 12), (2, 4), (2, 4)),
    ((12, 18), (2, 4), (2, 4)),
    ((4, 6), (2, 4), (2, 5)),
    ((6, 12), (2, 4), (2, 5)),
    ((12, 18), (2, 4), (2, 5)),
    ((20, 25), (2, 4), (2, 5)),
))

# Extended Data Table 5: (nodes, out-degree, shortest-path length).
SHORTEST_PATH = tuple(Lesson(n, k, p) for n, k, p in (
    ((5, 10), (1, 2), (2, 2)),
    ((5, 20), (1, 2), (2, 2)),
    ((10, 20), (1, 2), (2, 2)),
    ((10, 20), (1, 2), (2, 3)),
    ((10, 20), (1, 3), (2, 3)),
    ((10, 20), (2, 3), (2, 3)),
    ((10, 20), (2, 3), (2, 4)),
    ((10, 20), (2, 4), (2, 4)),
    ((10, 25), (2, 4), (2, 4)),
    ((10, 25), (2, 4), (2, 5)),
    ((10, 25), (2, 4), (2, 5)),
    ((15, 25), (2, 4), (2, 5)),
    ((15, 25), (2, 5), (2, 5)),
    ((20, 25), (2, 5), (2, 5)),
    ((20, 25), (2, 6), (2, 5)),
))


@dataclasses.dataclass(frozen=True)
class Schedule:
  """A task's curriculum settings.

  Attributes:
    lessons: the lesson table.
    threshold: pass mark (fraction correct).
    mix: probability that a training example comes from an earlier lesson.
    eval_every: training batches between evaluations (main worker).
    eval_episodes: episodes per evaluation.
  """

  lessons: Tuple[Lesson, ...]
  threshold: float
  mix: float
  eval_every: int
  eval_episodes: int


SCHEDULES = {
    "traversal": Schedule(TRAVERSAL, 0.9, 0.1, 100, 100),
    "inference": Schedule(INFERENCE, 0.9, 0.1, 100, 100),
    "shortest_path": Schedule(SHORTEST_PATH, 0.8, 0.0, 2000, 50),
}


def paper_schedule(task: str) -> Schedule:
  """The paper's schedule for ``task``; ValueError naming it if unknown."""
  if task not in SCHEDULES:
    raise ValueError(f"unknown graph task {task!r}; known: "
                     f"{sorted(SCHEDULES)}")
  return SCHEDULES[task]


class Curriculum:
  """Current lesson, mixing, pass rule, history, JSON state.

  Args:
    task: ``"traversal"``, ``"inference"`` or ``"shortest_path"``.
    lesson: starting lesson, 1-based.
    schedule: overrides the paper's (e.g. a miniature for tests).
    task_kwargs: extra arguments for the task class (e.g. ``beta``).
  """

  def __init__(self, task: str, lesson: int = 1,
               schedule: Optional[Schedule] = None, **task_kwargs):
    self.task_name = task
    self._task_class = tasks.task_class(task)
    self.schedule = schedule or paper_schedule(task)
    if not self.schedule.lessons:
      raise ValueError("a curriculum needs at least one lesson")
    if not 0 <= self.schedule.mix < 1:
      raise ValueError(f"mix must be in [0, 1), got {self.schedule.mix}")
    if task == "shortest_path" and self.schedule.mix:
      raise ValueError("shortest path does not mix earlier lessons")
    self._task_kwargs = task_kwargs
    self._tasks: Dict[Tuple[int, int], tasks.GraphTask] = {}
    self._check_lesson(lesson)
    self.lesson = lesson
    self.examples_seen = 0
    self.history: List[dict] = []

  @property
  def num_lessons(self) -> int:
    return len(self.schedule.lessons)

  def _check_lesson(self, lesson):
    if (isinstance(lesson, bool) or not isinstance(lesson, int) or
        not 1 <= lesson <= self.num_lessons):
      raise ValueError(f"lesson {lesson!r} out of range [1, "
                       f"{self.num_lessons}] for {self.task_name}")

  def _time(self, upto: int) -> int:
    return max(self._plain(i).natural_time() for i in range(1, upto + 1))

  def _plain(self, lesson: int) -> tasks.GraphTask:
    return self.task(lesson, pad=False)

  def task(self, lesson: Optional[int] = None,
           pad: bool = True) -> tasks.GraphTask:
    """The task of ``lesson`` (default current), padded to ``max_time``."""
    lesson = self.lesson if lesson is None else lesson
    self._check_lesson(lesson)
    pad_to = self._time(self.lesson) if pad else None
    if pad and lesson > self.lesson:
      pad_to = None
    key = (lesson, pad_to or 0)
    if key not in self._tasks:
      self._tasks[key] = self._task_class(self.schedule.lessons[lesson - 1],
                                          pad_to=pad_to, **self._task_kwargs)
    return self._tasks[key]

  @property
  def max_time(self) -> int:
    """Static batch length while on the current lesson."""
    return self._time(self.lesson)

  def lesson_of_examples(self, rng: np.random.Generator,
                         batch_size: int) -> np.ndarray:
    """``[B]`` 1-based lesson of each example (mixing, PROTOCOL §1.8)."""
    lessons = np.full(batch_size, self.lesson)
    if self.schedule.mix > 0 and self.lesson > 1:
      earlier = rng.random(batch_size) < self.schedule.mix
      lessons[earlier] = rng.integers(1, self.lesson, int(earlier.sum()))
    return lessons

  def sample(self, rng: np.random.Generator, batch_size: int,
             count: bool = True):
    """A training batch: the current lesson, mixed with earlier ones.

    ``count``: add ``batch_size`` to ``examples_seen`` (the trainer's task
    counts by steps instead, as it also draws batches to learn shapes).
    """
    lessons = self.lesson_of_examples(rng, batch_size)
    if count:
      self.examples_seen += batch_size
    if np.all(lessons == self.lesson):
      return self.task().sample(rng, batch_size)
    parts = [self.task(int(l)).sample(rng, 1) for l in lessons]
    return type(parts[0])(*(np.concatenate(
        [getattr(p, f) for p in parts], _batch_axis(f)) for f in
                             parts[0]._fields))

  def evaluation_task(self) -> tasks.GraphTask:
    """The current lesson, unmixed, for the pass-rule evaluation."""
    return self.task()

  def after_evaluation(self, results: dict) -> dict:
    """Records an evaluation; advances if it passes.

    Args:
      results: ``{"accuracy": fraction correct}`` on the current lesson.

    Returns:
      ``{"lesson", "accuracy", "passed", "advanced"}`` (JSON-able).
    """
    if "accuracy" not in results:
      raise ValueError(f"results need 'accuracy', got {sorted(results)}")
    accuracy = float(results["accuracy"])
    passed = accuracy >= self.schedule.threshold
    advanced = passed and self.lesson < self.num_lessons
    record = {"lesson": self.lesson, "accuracy": accuracy, "passed": passed,
              "advanced": advanced, "examples_seen": self.examples_seen}
    self.history.append(record)
    if advanced:
      self.lesson += 1
    return dict(record)

  def evaluate(self, predict, rng: np.random.Generator) -> dict:
    """Evaluates the current lesson and applies the pass rule.

    Args:
      predict: the task's ``evaluate`` argument (``predict(inputs) ->
        logits``; for shortest path ``run(batch) -> moves``).
    """
    accuracy = self.evaluation_task().evaluate(
        predict, rng, self.schedule.eval_episodes)
    return self.after_evaluation({"accuracy": accuracy})

  def curriculum_state(self) -> dict:
    return {"task": self.task_name, "lesson": self.lesson,
            "examples_seen": self.examples_seen,
            "history": [dict(r) for r in self.history]}

  def restore_curriculum(self, state: dict):
    if state.get("task") != self.task_name:
      raise ValueError(f"state is for task {state.get('task')!r}, not "
                       f"{self.task_name!r}")
    self._check_lesson(state["lesson"])
    self.lesson = int(state["lesson"])
    self.examples_seen = int(state["examples_seen"])
    self.history = [dict(r) for r in state["history"]]

  def to_json(self) -> str:
    return json.dumps(self.curriculum_state())


def _batch_axis(field: str) -> int:
  """Batch axis of a batch field: time-major arrays 1, per-episode 0."""
  return 1 if field in ("inputs", "targets", "mask", "answer",
                        "teacher") else 0


# A miniature traversal curriculum for tests: two lessons on 2-3 node graphs
# with one out-edge and one step. In lesson 1 every graph has 2 nodes and
# out-degree 1, so the answer is fully determined by the description's
# single triple whose source is the queried node: a lookup predictor (or a
# short training) passes it, showing the machinery advance.
MINIATURE = Schedule(
    lessons=(Lesson((2, 2), (1, 1), (1, 1)), Lesson((2, 3), (1, 1), (1, 1))),
    threshold=0.9, mix=0.5, eval_every=1, eval_episodes=20)
