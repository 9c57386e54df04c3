"""Reading bAbI (Weston et al., 2015) the way the DNC paper prepared it.

A story is the lines of a file up to the next line numbered 1. Each story
becomes one word sequence: line numbers (and every other number) removed,
lower-cased, '.' ending a statement, '?' ending a question, then one '-' per
answer word; the network must produce the answer word at each '-'. Answers
of several words ("milk,apple", "s,w") give several '-'.

The vocabulary is built from the training stories and saved with the model;
about 10% of each task's training stories are moved to validation with a
fixed seed. ``qaN_*_test.txt`` files are read by their standard names when
present.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import re
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

PAD, STOP, QUERY, ANSWER = "<pad>", ".", "?", "-"
_WORD = re.compile(r"[a-z]+|[.?]")
_TASK_FILE = re.compile(r"qa(\d+)_[\w-]+_(train|test)\.txt$")


class BabiFormatError(ValueError):
  """A bAbI file that does not follow the format; names file and line."""


@dataclasses.dataclass(frozen=True)
class Story:
  """One story as tokens.

  Attributes:
    task: the bAbI task number, 1 to 20.
    tokens: the words and symbols, each answer word replaced by ``-``.
    answers: the answer word of every ``-``, in order.
    questions: for every ``-``, the index of its question in the story
      (a question with two answer words has two ``-`` with one index).
  """

  task: int
  tokens: Tuple[str, ...]
  answers: Tuple[str, ...]
  questions: Tuple[int, ...]

  @property
  def num_questions(self) -> int:
    return (self.questions[-1] + 1) if self.questions else 0


def _words(text: str) -> List[str]:
  # Lower-case words and the two sentence symbols; digits and other
  # characters are dropped (the paper removes numbers).
  return _WORD.findall(text.lower())


def parse_file(path, task: Optional[int] = None) -> List[Story]:
  """The stories of one bAbI file.

  Raises:
    BabiFormatError: naming the file and line, for a line without a
      number, a question without an answer, or numbering that skips.
  """
  path = pathlib.Path(path)
  if task is None:
    match = _TASK_FILE.search(path.name)
    if not match:
      raise BabiFormatError(f"{path}: not a bAbI task file name "
                            "(expected qaN_<name>_train.txt or _test.txt)")
    task = int(match.group(1))
  stories: List[Story] = []
  tokens: List[str] = []
  answers: List[str] = []
  questions: List[int] = []
  previous_id = 0

  def finish():
    if tokens:
      stories.append(Story(task, tuple(tokens), tuple(answers),
                           tuple(questions)))

  for number, line in _read_lines(path):
    if not line.strip():
      continue
    where = f"{path}, line {number}"
    head, _, text = line.partition(" ")
    if not (head.isascii() and head.isdigit()):
      raise BabiFormatError(f"{where}: a line must start with its number, "
                            f"got {line[:40]!r}")
    line_id = int(head)
    if line_id == 1:
      finish()
      tokens, answers, questions = [], [], []
    elif line_id != previous_id + 1:
      raise BabiFormatError(f"{where}: line number {line_id} follows "
                            f"{previous_id}")
    previous_id = line_id
    if "\t" in text:
      parts = text.split("\t")
      if len(parts) < 2 or not parts[1].strip():
        raise BabiFormatError(f"{where}: a question needs a tab and an "
                              "answer")
      words = _words(parts[0])
      if not words or words[-1] != QUERY:
        words.append(QUERY)
      answer_words = [w for a in parts[1].split(",") for w in _words(a)]
      if not answer_words:
        raise BabiFormatError(f"{where}: empty answer {parts[1]!r}")
      question = (questions[-1] + 1) if questions else 0
      tokens.extend(words)
      for word in answer_words:
        tokens.append(ANSWER)
        answers.append(word)
        questions.append(question)
    else:
      words = _words(text)
      if QUERY in words:
        raise BabiFormatError(f"{where}: a question needs a tab and an "
                              "answer after it")
      if not words:
        raise BabiFormatError(f"{where}: an empty statement")
      if words[-1] != STOP:
        words.append(STOP)
      tokens.extend(words)
  finish()
  if not stories:
    raise BabiFormatError(f"{path}: holds no stories (an empty file?)")
  return stories


def _read_lines(path: pathlib.Path):
  """``(number, text)`` of every line, UTF-8; errors name file and line."""
  try:
    data = path.read_bytes()
  except OSError as error:
    raise BabiFormatError(f"{path}: cannot be read "
                          f"({error.strerror or error})") from None
  for number, raw in enumerate(data.split(b"\n"), start=1):
    try:
      text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
      raise BabiFormatError(f"{path}, line {number}: not UTF-8 text (byte "
                            f"{raw[error.start]:#04x} at column "
                            f"{error.start + 1})") from None
    yield number, text.rstrip("\r")


def task_files(data_dir, split: str) -> Dict[int, pathlib.Path]:
  """``{task: path}`` of the ``qaN_*_<split>.txt`` files in ``data_dir``."""
  data_dir = pathlib.Path(data_dir)
  if not data_dir.is_dir():
    raise FileNotFoundError(f"bAbI folder {data_dir} does not exist")
  files = {}
  for path in sorted(data_dir.glob(f"qa*_{split}.txt")):
    match = _TASK_FILE.search(path.name)
    if match:
      files[int(match.group(1))] = path
  return files


@dataclasses.dataclass(frozen=True)
class Vocabulary:
  """Words to ids; id 0 is padding, the symbols '.', '?', '-' come next."""

  words: Tuple[str, ...]

  @classmethod
  def build(cls, stories: Iterable[Story]) -> "Vocabulary":
    seen = set()
    for story in stories:
      seen.update(story.tokens)
      seen.update(story.answers)
    symbols = (PAD, STOP, QUERY, ANSWER)
    return cls(symbols + tuple(sorted(seen - set(symbols))))

  def __len__(self) -> int:
    return len(self.words)

  @property
  def index(self) -> Dict[str, int]:
    return {w: i for i, w in enumerate(self.words)}

  def encode(self, words: Sequence[str], where: str = "") -> np.ndarray:
    index = self.index
    try:
      return np.array([index[w] for w in words], np.int32)
    except KeyError as error:
      raise KeyError(f"word {error.args[0]!r}{where} is not in the "
                     "vocabulary built from the training stories") from None

  def save(self, path):
    pathlib.Path(path).write_text(json.dumps({"words": list(self.words)}))

  @classmethod
  def load(cls, path) -> "Vocabulary":
    return cls(tuple(json.loads(pathlib.Path(path).read_text())["words"]))


def split_stories(stories: Sequence[Story], fraction: float,
                  seed: int) -> Tuple[List[Story], List[Story]]:
  """``(train, valid)``: ``fraction`` of each task's stories to validation.

  The choice depends only on ``seed`` and the stories' order in the files.
  """
  if not 0 <= fraction < 1:
    raise ValueError(f"validation fraction must be in [0, 1), got {fraction}")
  train, valid = [], []
  for task in sorted({s.task for s in stories}):
    of_task = [s for s in stories if s.task == task]
    rng = np.random.default_rng([seed, task])
    count = int(round(fraction * len(of_task)))
    chosen = set(rng.permutation(len(of_task))[:count].tolist())
    for i, story in enumerate(of_task):
      (valid if i in chosen else train).append(story)
  return train, valid


def load_splits(data_dir, valid_fraction: float = 0.1, seed: int = 0,
                tasks: Optional[Sequence[int]] = None
                ) -> Dict[str, List[Story]]:
  """``{"train", "valid"[, "test"]}`` stories of the folder's tasks."""
  train_files = task_files(data_dir, "train")
  if not train_files:
    raise FileNotFoundError(f"no qaN_*_train.txt files in {data_dir}")
  if tasks is not None:
    missing = sorted(set(tasks) - set(train_files))
    if missing:
      raise FileNotFoundError(f"{data_dir} has no training file for tasks "
                              f"{missing}")
    train_files = {t: p for t, p in train_files.items() if t in tasks}
  stories = [s for t, p in sorted(train_files.items())
             for s in parse_file(p, t)]
  train, valid = split_stories(stories, valid_fraction, seed)
  splits = {"train": train, "valid": valid}
  test_files = {t: p for t, p in task_files(data_dir, "test").items()
                if t in train_files}
  if test_files:
    splits["test"] = [s for t, p in sorted(test_files.items())
                      for s in parse_file(p, t)]
  return splits
