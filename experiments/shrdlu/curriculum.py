"""Extended Data Table 6 (26 lessons) and the curriculum that walks it.

Rule (PROTOCOL §2.8): every ``eval_every`` updates (paper: 400 batches) the
current lesson is tested; it is passed when the chosen goals' constraints
satisfied at episode end average >= 85% over the last 160 episodes *of the
current lesson* (the training episodes themselves: choice). A fraction
``mix`` = 10% of each batch's episodes come from earlier lessons, uniformly
(choice: the paper says "10% from earlier lessons" for the graph tasks).
The final lesson has no test (reading A): training stays on it.

Everything is JSON-able (``to_json`` / ``from_json``) for checkpoints.
"""

from __future__ import annotations

import dataclasses
from typing import Dict, List, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from experiments.shrdlu.env import Lesson

# (goals, blocks, constraints, depth). Rows 7, 10, 17 repaired (‡, PROTOCOL
# §2.9) by the staircase: lesson 7 blocks (6, 6), depth (2, 3); lesson 10
# constraints (3, 4), depth (3, 3); lesson 17 constraints (5, 5).
TABLE_6 = (
    ((2, 2), (3, 3), (1, 1), (1, 1)),
    ((2, 3), (3, 4), (1, 2), (1, 1)),
    ((3, 3), (4, 4), (1, 2), (1, 2)),
    ((3, 4), (4, 5), (2, 2), (1, 2)),
    ((4, 4), (5, 5), (2, 2), (2, 2)),
    ((4, 5), (5, 6), (2, 3), (2, 2)),
    ((5, 5), (6, 6), (2, 3), (2, 3)),
    ((5, 6), (6, 6), (3, 3), (2, 3)),
    ((6, 6), (6, 6), (3, 3), (3, 3)),
    ((6, 7), (6, 6), (3, 4), (3, 3)),
    ((7, 7), (6, 6), (3, 4), (3, 4)),
    ((7, 8), (6, 6), (4, 4), (3, 4)),
    ((8, 8), (6, 6), (4, 4), (4, 4)),
    ((8, 9), (6, 6), (4, 5), (4, 4)),
    ((9, 9), (6, 6), (4, 5), (4, 5)),
    ((9, 10), (6, 6), (5, 5), (4, 5)),
    ((10, 10), (6, 6), (5, 5), (5, 5)),
    ((10, 10), (6, 6), (5, 6), (5, 5)),
    ((10, 10), (6, 6), (5, 6), (5, 6)),
    ((10, 10), (6, 6), (6, 6), (5, 6)),
    ((10, 10), (6, 6), (6, 6), (6, 6)),
    ((10, 10), (6, 6), (6, 6), (6, 6)),
    ((10, 10), (6, 6), (6, 6), (6, 7)),
    ((10, 10), (6, 6), (6, 6), (6, 7)),
    ((10, 10), (6, 6), (6, 6), (7, 7)),
    ((10, 10), (6, 6), (1, 6), (1, 7)),
)
LESSONS = tuple(Lesson(*row) for row in TABLE_6)


def lesson_table(lessons: Sequence[Lesson]) -> np.ndarray:
  """``int32[num_lessons, 8]`` for :func:`sample_lessons` and env.reset."""
  return np.stack([lesson.as_array() for lesson in lessons])


def sample_lessons(key: jax.Array, current: jax.Array, batch: int,
                   mix: float) -> jax.Array:
  """``int32[batch]`` lesson indices: ``current``, or with probability
  ``mix`` (when ``current > 0``) an earlier lesson, uniformly. Jit-able."""
  k1, k2 = jax.random.split(key)
  earlier = jax.random.randint(k1, (batch,), 0, jnp.maximum(current, 1),
                               dtype=jnp.int32)
  use = jax.random.bernoulli(k2, mix, (batch,)) & (current > 0)
  return jnp.where(use, earlier, current).astype(jnp.int32)


@dataclasses.dataclass
class Curriculum:
  """Which lesson is being trained, and the record of passed lessons.

  Attributes:
    lessons: the lessons (default: Table 6).
    threshold: mean fraction of constraints satisfied to pass (0.85).
    window: episodes averaged (160).
    mix: fraction of episodes from earlier lessons (0.1).
    lesson: index of the current lesson.
    scores: fractions of the latest current-lesson episodes (<= window).
    history: ``{"lesson", "step", "score"}`` per passed lesson.
  """
  lessons: Sequence[Lesson] = LESSONS
  threshold: float = 0.85
  window: int = 160
  mix: float = 0.1
  lesson: int = 0
  scores: List[float] = dataclasses.field(default_factory=list)
  history: List[Dict] = dataclasses.field(default_factory=list)

  def __post_init__(self):
    if not self.lessons:
      raise ValueError("lessons must not be empty")
    if not 0 < self.threshold <= 1:
      raise ValueError(f"threshold must be in (0, 1], got {self.threshold}")
    if self.window < 1:
      raise ValueError(f"window must be >= 1, got {self.window}")
    if not 0 <= self.mix < 1:
      raise ValueError(f"mix must be in [0, 1), got {self.mix}")
    if not 0 <= self.lesson < len(self.lessons):
      raise ValueError(f"lesson must be in 0..{len(self.lessons) - 1}, got "
                       f"{self.lesson}")

  @property
  def final(self) -> bool:
    return self.lesson == len(self.lessons) - 1

  def table(self) -> np.ndarray:
    return lesson_table(self.lessons)

  def record(self, lesson_ids, fractions):
    """Adds finished episodes; only those of the current lesson count."""
    for lesson, fraction in zip(np.asarray(lesson_ids).tolist(),
                                np.asarray(fractions).tolist()):
      if lesson == self.lesson:
        self.scores.append(float(fraction))
    del self.scores[:-self.window]

  def score(self) -> Optional[float]:
    """Mean over the window, or None until the window is full."""
    if len(self.scores) < self.window:
      return None
    return float(np.mean(self.scores))

  def evaluate(self, step: int) -> bool:
    """Advances (and returns True) if the current lesson is passed."""
    score = self.score()
    if self.final or score is None or score < self.threshold:
      return False
    self.history.append(dict(lesson=self.lesson, step=int(step),
                             score=score))
    self.lesson += 1
    self.scores = []
    return True

  def to_json(self) -> Dict:
    return dict(lessons=[dataclasses.asdict(x) for x in self.lessons],
                threshold=self.threshold, window=self.window, mix=self.mix,
                lesson=self.lesson, scores=list(self.scores),
                history=list(self.history))

  @classmethod
  def from_json(cls, data: Dict) -> "Curriculum":
    lessons = tuple(Lesson(**{k: tuple(v) for k, v in x.items()})
                    for x in data["lessons"])
    return cls(lessons=lessons, threshold=data["threshold"],
               window=data["window"], mix=data["mix"], lesson=data["lesson"],
               scores=list(data["scores"]), history=list(data["history"]))
