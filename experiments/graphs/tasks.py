"""The three graph tasks: traversal, shortest path and inference.

Each task is configured by one :class:`Lesson` (a row of Extended Data
Tables 3-5) and supplies ``sample(rng, batch_size)``, ``loss(logits,
batch)``, ``metrics(logits, batch)`` and ``evaluate(...)`` (fraction of
episodes fully correct; for shortest path, fraction of minimal paths).
Arrays are time-major: ``inputs [T, B, 92]``, ``targets [T, B, 90]``,
``mask [T, B]``; ``T`` is the lesson's static ``max_time`` (or a larger
``pad_to``) so a jit-compiled step compiles once per lesson. Episodes are
left-aligned; padding steps are blank with mask 0.

An episode (PROTOCOL §1.3): the graph's triples in random order, one per
step; then per round a query, 10 planning steps (shortest path and
inference), and an answer phase that ends with the termination step
(``encoding.TERMINATION``). See ``encoding`` for the flag channels.

Choices (also in README.md):

* Traversal: one query/answer round per episode (NOT STATED); path length
  uniform inclusive in the lesson's range; the walk is uniform over the
  current node's out-edges and may revisit nodes and edges; answer steps
  get blank inputs (flag on).
* Inference: 3 rounds (Table 4). Relation length uniform inclusive in the
  lesson's range; then (start node, relation) uniform over the pairs of that
  length that can be followed in the graph (a new graph is drawn if none
  can). The target is (start, relation, end), then termination.
* Shortest path: one round; path length L uniform inclusive in the lesson's
  range, then (start, end) uniform among pairs at distance exactly L (a new
  graph is drawn if none, or L is lowered after 20 tries). Answer budget:
  ``max path length + 2`` steps (one step longer than optimal, then
  termination). The first answer input is blank; each later answer input is
  the triple chosen on the previous step. ``sample`` returns the
  teacher-forced batch (every choice = target, beta = 1) plus the arrays the
  closed-loop core (``dagger.FeedbackCore``) needs; ``teacher [T, B]`` holds
  the per-episode, per-step Bernoulli(beta) coins drawn from ``rng``.
  Training uses the plain nine-digit loss on the target triple (PROTOCOL
  §1.5 leaves open whether to use the renormalised distribution); moves use
  the renormalised distribution's argmax.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Dict, NamedTuple, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from experiments.graphs import encoding
from experiments.graphs import generate
from experiments.graphs.encoding import BLANK, TERMINATION

PLANNING_STEPS = 10
INFERENCE_QUERIES = 3


@dataclasses.dataclass(frozen=True)
class Lesson:
  """One curriculum row.

  Attributes:
    nodes: inclusive range of the node count.
    out_degree: inclusive range of K.
    length: inclusive range of the path length (traversal, shortest path)
      or relation length (inference).
    queries: query/answer rounds per episode.
  """

  nodes: Tuple[int, int]
  out_degree: Tuple[int, int]
  length: Tuple[int, int]
  queries: int = 1

  def __post_init__(self):
    generate.check_range("nodes", self.nodes, 2)
    generate.check_range("out_degree", self.out_degree, 1)
    generate.check_range("length", self.length, 1)
    if not isinstance(self.queries, int) or self.queries < 1:
      raise ValueError(f"queries must be an int >= 1, got {self.queries!r}")

  @property
  def max_edges(self) -> int:
    return self.nodes[1] * min(self.out_degree[1], self.nodes[1] - 1)


class GraphBatch(NamedTuple):
  """A padded, time-major batch.

  Attributes:
    inputs: ``[T, B, 92]`` float32.
    targets: ``[T, B, 90]`` float32 one-hot triples.
    mask: ``[T, B]`` float32, 1 on answer steps.
  """

  inputs: np.ndarray
  targets: np.ndarray
  mask: np.ndarray


class ShortestPathBatch(NamedTuple):
  """A teacher-forced shortest-path batch plus what closed loop needs.

  ``N`` and ``D`` are the lesson's maximum node count and out-degree; out
  slots of a node are its out-edges sorted by label, padded with -1.

  Attributes:
    inputs, targets, mask: as :class:`GraphBatch` (teacher-forced).
    answer: ``[T, B]`` float32, 1 on the answer budget's steps.
    teacher: ``[T, B]`` bool, the Bernoulli(beta) coin of each step: True
      -> the move follows the target, False -> the network's choice.
    node_labels: ``[B, N]`` int32 (-1 padding).
    out_label: ``[B, N, D]`` int32 edge label of each out slot, -1 if none.
    out_dst: ``[B, N, D]`` int32 destination index of each slot, -1 if none.
    next_slot: ``[B, N, N]`` int32 slot of the optimal first move, -1 if
      none (same node or unreachable).
    dist: ``[B, N, N]`` int32 shortest distances, -1 unreachable.
    start: ``[B]`` int32 start node index.
    dest: ``[B]`` int32 destination node index.
  """

  inputs: np.ndarray
  targets: np.ndarray
  mask: np.ndarray
  answer: np.ndarray
  teacher: np.ndarray
  node_labels: np.ndarray
  out_label: np.ndarray
  out_dst: np.ndarray
  next_slot: np.ndarray
  dist: np.ndarray
  start: np.ndarray
  dest: np.ndarray


class _Episode:
  """Builds one episode's ``inputs``, ``targets`` and ``mask`` step by step."""

  def __init__(self):
    self.inputs = []   # [90] triples (labels), flags kept separately
    self.flags = []    # (phase pulse, answer)
    self.targets = []  # triple or None

  def steps(self, triples, pulse_first: bool, answer: bool, targets=None):
    for i, triple in enumerate(triples):
      self.inputs.append(tuple(triple))
      self.flags.append((pulse_first and i == 0, answer))
      self.targets.append(None if targets is None else tuple(targets[i]))

  def description(self, rng: np.random.Generator, graph: generate.Graph):
    triples = graph.triples()
    self.steps(triples[rng.permutation(len(triples))], False, False)

  def planning(self, steps: int = PLANNING_STEPS):
    self.steps([(BLANK,) * 3] * steps, True, False)

  def __len__(self):
    return len(self.inputs)

  def write(self, batch, b: int):
    n = len(self.inputs)
    if n > batch.inputs.shape[0]:
      raise ValueError(f"episode of {n} steps exceeds max_time "
                       f"{batch.inputs.shape[0]}")
    batch.inputs[:n, b, :90] = encoding.encode_triples(
        np.asarray(self.inputs))
    flags = np.asarray(self.flags, np.float32)
    batch.inputs[:n, b, 90:] = flags
    steps = [t for t, x in enumerate(self.targets) if x is not None]
    if steps:
      batch.targets[steps, b] = encoding.encode_triples(
          np.asarray([self.targets[t] for t in steps]))
      batch.mask[steps, b] = 1.0


def _empty(time: int, batch_size: int) -> GraphBatch:
  return GraphBatch(
      np.zeros((time, batch_size, encoding.INPUT_SIZE), np.float32),
      np.zeros((time, batch_size, encoding.OUTPUT_SIZE), np.float32),
      np.zeros((time, batch_size), np.float32))


class GraphTask:
  """Shared interface; see :class:`Traversal` for one."""

  name: str = ""
  input_size = encoding.INPUT_SIZE
  output_size = encoding.OUTPUT_SIZE

  def __init__(self, lesson: Lesson, pad_to: Optional[int] = None):
    if not isinstance(lesson, Lesson):
      raise ValueError(f"lesson must be a Lesson, got {lesson!r}")
    self.lesson = lesson
    if pad_to is not None and pad_to < self.natural_time():
      raise ValueError(f"pad_to={pad_to} is shorter than the lesson's "
                       f"{self.natural_time()} steps")
    self.max_time = pad_to or self.natural_time()

  def natural_time(self) -> int:
    """Longest possible episode of the lesson."""
    raise NotImplementedError

  def episode(self, rng: np.random.Generator) -> _Episode:
    raise NotImplementedError

  def sample(self, rng: np.random.Generator, batch_size: int,
             **episode_kwargs) -> GraphBatch:
    """``batch_size`` episodes; ``episode_kwargs`` go to :meth:`episode`."""
    batch = _empty(self.max_time, batch_size)
    for b in range(batch_size):
      self.episode(rng, **episode_kwargs).write(batch, b)
    return batch

  def evaluation_sample(self, rng: np.random.Generator,
                        batch_size: int) -> GraphBatch:
    """A batch of the lesson's own distribution, whatever training draws."""
    return self.sample(rng, batch_size)

  def loss(self, logits: jax.Array, batch) -> jax.Array:
    """Nine-digit cross-entropy summed on answer steps, mean over batch."""
    return encoding.digit_loss(logits, batch.targets, batch.mask)

  def metrics(self, logits: jax.Array, batch) -> Dict[str, jax.Array]:
    right = encoding.step_correct(logits, batch.targets)
    mask = batch.mask > 0
    episode = jnp.all(right | ~mask, 0)
    return {
        "step_accuracy": jnp.sum(right * mask) / jnp.maximum(
            jnp.sum(mask), 1),
        "episode_accuracy": jnp.mean(episode),
    }

  def evaluate(self, predict: Callable, rng: np.random.Generator,
               num_episodes: int, batch_size: int = 32) -> float:
    """Fraction of ``num_episodes`` fresh episodes with every target right.

    Args:
      predict: ``predict(inputs [T, B, 92]) -> logits [T, B, 90]``; the
        prediction is the per-digit argmax (modal).
    """
    right = 0
    done = 0
    while done < num_episodes:
      size = min(batch_size, num_episodes - done)
      batch = self.evaluation_sample(rng, size)
      logits = predict(batch.inputs)
      right += int(np.sum(encoding.episode_correct(logits, batch.targets,
                                                   batch.mask)))
      done += size
    return right / num_episodes


class Traversal(GraphTask):
  """Follow a sequence of edge labels from a start node (PROTOCOL §1.5)."""

  name = "traversal"

  def natural_time(self):
    length = self.lesson.length[1]
    return self.lesson.max_edges + self.lesson.queries * (2 * length + 1)

  def episode(self, rng):
    lesson = self.lesson
    graph = generate.random_graph(rng, lesson.nodes, lesson.out_degree)
    walks = []
    for _ in range(lesson.queries):
      length = int(rng.integers(lesson.length[0], lesson.length[1] + 1))
      start = int(rng.integers(graph.num_nodes))
      walks.append(generate.random_walk(rng, graph, start, length))
    return traversal_episode(rng, graph, walks)


def traversal_episode(rng: np.random.Generator, graph: generate.Graph,
                      walks: Sequence[np.ndarray]) -> _Episode:
  """Description in random order, then one query/answer round per walk.

  Args:
    walks: ``[L, 3]`` arrays of ``graph.edges`` rows, one per round.
  """
  ep = _Episode()
  ep.description(rng, graph)
  labels = graph.node_labels
  for walk in walks:
    query = [(labels[walk[0, 0]], walk[0, 1], BLANK)] + [
        (BLANK, int(row[1]), BLANK) for row in walk[1:]]
    ep.steps(query, True, False)
    answers = [(labels[s], l, labels[d]) for s, l, d in walk]
    answers.append(TERMINATION)
    ep.steps([(BLANK,) * 3] * len(answers), True, True, answers)
  return ep


def batch_of(episodes: Sequence[_Episode],
             pad_to: Optional[int] = None) -> GraphBatch:
  """Episodes in one batch padded to ``pad_to`` (default: the longest)."""
  time = pad_to or max(len(ep) for ep in episodes)
  batch = _empty(time, len(episodes))
  for b, ep in enumerate(episodes):
    ep.write(batch, b)
  return batch


class Inference(GraphTask):
  """Follow an unseen relation's edge sequence (PROTOCOL §1.5).

  Args:
    lesson: the lesson (``length`` = relation length, 2-5).
    relations: ``{label: edge-label sequence}``; the fixed global table
      (``generate.relation_table()``) by default.
    ambiguous_fraction: training only, not the paper's: the probability
      that a query is drawn among those whose relation's last edge label
      alone does not give the answer (``generate.last_label_ambiguous``),
      instead of among all (a new graph is drawn if it has none). A
      network can answer the others by finding the one edge carrying that
      label, without following the relation; raising their share makes
      that shortcut pay less. Evaluation (:meth:`evaluation_sample`)
      always draws the lesson's own queries.
  """

  name = "inference"

  def __init__(self, lesson, pad_to=None, relations=None,
               ambiguous_fraction: float = 0.0):
    super().__init__(lesson, pad_to)
    if not 0 <= ambiguous_fraction <= 1:
      raise ValueError(f"ambiguous_fraction must be in [0, 1], got "
                       f"{ambiguous_fraction}")
    self.ambiguous_fraction = float(ambiguous_fraction)
    self.relations = relations or generate.relation_table()
    lengths = {len(s) for s in self.relations.values()}
    for length in range(lesson.length[0], lesson.length[1] + 1):
      if length not in lengths:
        raise ValueError(f"no relations of length {length}")
    self._by_length = {}
    for label, seq in sorted(self.relations.items()):
      labels, seqs = self._by_length.setdefault(len(seq), ([], []))
      labels.append(label)
      seqs.append(seq)
    self._by_length = {k: (np.asarray(l), np.asarray(s))
                       for k, (l, s) in self._by_length.items()}

  def natural_time(self):
    return self.lesson.max_edges + self.lesson.queries * (
        1 + PLANNING_STEPS + 2)

  def evaluation_sample(self, rng, batch_size):
    return self.sample(rng, batch_size, ambiguous_fraction=0.0)

  def episode(self, rng, ambiguous_fraction: Optional[float] = None):
    lesson = self.lesson
    fraction = (self.ambiguous_fraction if ambiguous_fraction is None
                else ambiguous_fraction)
    while True:
      graph = generate.random_graph(rng, lesson.nodes, lesson.out_degree,
                                    edge_labels="digits")
      table = generate.stuck_transition(graph)
      queries = []
      for _ in range(lesson.queries):
        length = int(rng.integers(lesson.length[0], lesson.length[1] + 1))
        labels, seqs = self._by_length[length]
        ends = generate.follow_all(graph, seqs, table)
        usable = ends >= 0
        # No coin is drawn at 0, so the lesson's own episodes keep the
        # random stream they had before the option existed.
        if fraction and rng.random() < fraction:
          usable &= generate.last_label_ambiguous(graph, seqs)[None, :]
        starts, which = np.nonzero(usable)
        if not len(starts):
          break
        pick = rng.integers(len(starts))
        queries.append((int(starts[pick]), int(labels[which[pick]]),
                        int(ends[starts[pick], which[pick]])))
      if len(queries) == lesson.queries:
        break
    return inference_episode(rng, graph, queries)


def inference_episode(rng: np.random.Generator, graph: generate.Graph,
                      queries: Sequence[Tuple[int, int, int]]) -> _Episode:
  """Description, then per query (start index, relation label, end index):
  the query step, 10 planning steps, the answer and termination."""
  ep = _Episode()
  ep.description(rng, graph)
  node = graph.node_labels
  for start, relation, end in queries:
    ep.steps([(node[start], relation, BLANK)], True, False)
    ep.planning()
    ep.steps([(BLANK,) * 3] * 2, True, True,
             [(node[start], relation, node[end]), TERMINATION])
  return ep


class ShortestPath(GraphTask):
  """Find a shortest path from start to end (PROTOCOL §1.5).

  Args:
    lesson: the lesson (``length`` = shortest-path length in edges).
    beta: probability that a training move follows the target (0.8).
    slack: a path counts as correct if it is at most ``slack`` steps longer
      than the shortest (0: the Table 5 caption's definition, the default).
  """

  name = "shortest_path"

  def __init__(self, lesson, pad_to=None, beta: float = 0.8, slack: int = 0):
    super().__init__(lesson, pad_to)
    if not 0 <= beta <= 1:
      raise ValueError(f"beta must be in [0, 1], got {beta}")
    if slack not in (0, 1):
      raise ValueError(f"slack must be 0 or 1, got {slack}")
    self.beta = beta
    self.slack = slack

  @property
  def answer_steps(self) -> int:
    return self.lesson.length[1] + 2

  @property
  def max_degree(self) -> int:
    return min(self.lesson.out_degree[1], self.lesson.nodes[1] - 1)

  def natural_time(self):
    return self.lesson.max_edges + 1 + PLANNING_STEPS + self.answer_steps

  def problem(self, rng: np.random.Generator):
    """``(graph, distances, start, end)`` of one episode of the lesson."""
    lesson = self.lesson
    length = int(rng.integers(lesson.length[0], lesson.length[1] + 1))
    tries = 0
    while True:
      graph = generate.random_graph(rng, lesson.nodes, lesson.out_degree)
      dist = generate.distances(graph)
      starts, ends = np.nonzero(dist == length)
      if len(starts):
        pick = rng.integers(len(starts))
        return graph, dist, int(starts[pick]), int(ends[pick])
      tries += 1
      if tries % 20 == 0 and length > 1:
        length -= 1

  def sample(self, rng, batch_size, beta: Optional[float] = None):
    problems = [self.problem(rng) for _ in range(batch_size)]
    return shortest_path_batch(rng, problems, self.max_time,
                               self.lesson.nodes[1], self.max_degree,
                               self.answer_steps,
                               self.beta if beta is None else beta)

  def score_paths(self, batch: ShortestPathBatch,
                  moves: np.ndarray) -> np.ndarray:
    """``[B]`` bool: the closed-loop path is minimal (within ``slack``).

    Args:
      moves: ``[T, B]`` int slot chosen at each step (``D`` = terminate;
        only answer steps are read), e.g. ``FeedbackCore``'s ``choice``.
    """
    moves = np.asarray(moves)
    d = batch.out_label.shape[-1]
    result = np.zeros(len(batch.start), bool)
    for b in range(len(batch.start)):
      node, steps = int(batch.start[b]), 0
      for t in np.nonzero(batch.answer[:, b])[0]:
        move = int(moves[t, b])
        if move < 0:  # Inactive: the episode already failed.
          break
        if move == d:
          optimal = batch.dist[b, batch.start[b], batch.dest[b]]
          result[b] = (node == batch.dest[b] and
                       steps <= optimal + self.slack)
          break
        if batch.out_dst[b, node, move] < 0:
          break
        node = int(batch.out_dst[b, node, move])
        steps += 1
    return result

  def evaluate(self, run: Callable, rng: np.random.Generator,
               num_episodes: int, batch_size: int = 1) -> float:
    """Fraction of fresh episodes whose network-only path is minimal.

    Args:
      run: ``run(batch) -> moves [T, B]`` closed-loop slot choices, e.g.
        the ``choice`` output of ``FeedbackCore`` unrolled on a batch
        sampled with ``beta = 0`` (network-only, modal moves).
    """
    right = 0
    done = 0
    while done < num_episodes:
      size = min(batch_size, num_episodes - done)
      batch = self.sample(rng, size, beta=0.0)
      right += int(np.sum(self.score_paths(batch, run(batch))))
      done += size
    return right / num_episodes


def shortest_path_batch(rng: np.random.Generator, problems: Sequence[tuple],
                        max_time: Optional[int] = None,
                        max_nodes: Optional[int] = None,
                        max_degree: Optional[int] = None,
                        answer_steps: Optional[int] = None,
                        beta: float = 0.0) -> ShortestPathBatch:
  """A :class:`ShortestPathBatch` for given problems.

  Args:
    problems: ``(graph, distances, start, end)`` per episode.
    max_time, max_nodes, max_degree: padding (default: the largest needed).
    answer_steps: answer budget (default: longest shortest path + 2).
    beta: probability of each step's teacher coin.
  """
  batch_size = len(problems)
  n = max_nodes or max(g.num_nodes for g, *_ in problems)
  d = max_degree or max(int(g.out_degrees().max()) for g, *_ in problems)
  budget = answer_steps or 2 + max(int(dist[s, e])
                                   for _, dist, s, e in problems)
  episodes, first_answers = [], []
  tables = []
  for graph, dist, start, end in problems:
    table = generate.next_edges(graph, dist)
    tables.append(table)
    path = generate.shortest_path(graph, start, end, table)
    labels = graph.node_labels
    ep = _Episode()
    ep.description(rng, graph)
    ep.steps([(labels[start], BLANK, labels[end])], True, False)
    ep.planning()
    first_answers.append(len(ep))
    triples = [(labels[s], l, labels[e]) for s, l, e in path]
    ep.steps([(BLANK,) * 3] + triples, True, True, triples + [TERMINATION])
    episodes.append(ep)
  t_max = max_time or max(f + budget for f in first_answers)
  base = batch_of(episodes, t_max)
  answer = np.zeros((t_max, batch_size), np.float32)
  node_labels = np.full((batch_size, n), -1, np.int32)
  out_label = np.full((batch_size, n, d), -1, np.int32)
  out_dst = np.full((batch_size, n, d), -1, np.int32)
  next_slot = np.full((batch_size, n, n), -1, np.int32)
  dist_all = np.full((batch_size, n, n), -1, np.int32)
  start_all = np.zeros(batch_size, np.int32)
  dest_all = np.zeros(batch_size, np.int32)
  for b, ((graph, dist, start, end), table) in enumerate(zip(problems,
                                                             tables)):
    budget_steps = slice(first_answers[b], first_answers[b] + budget)
    answer[budget_steps, b] = 1.0
    # The answer flag is held over the whole budget, also after the
    # termination step (mask 0 there), as in closed loop.
    base.inputs[budget_steps, b, encoding.ANSWER_CHANNEL] = 1.0
    nn = graph.num_nodes
    node_labels[b, :nn] = graph.node_labels
    slot_of_row = np.full(len(graph.edges), -1)
    for node in range(nn):
      rows = np.nonzero(graph.edges[:, 0] == node)[0]
      rows = rows[np.argsort(graph.edges[rows, 1], kind="stable")]
      out_label[b, node, :len(rows)] = graph.edges[rows, 1]
      out_dst[b, node, :len(rows)] = graph.edges[rows, 2]
      slot_of_row[rows] = np.arange(len(rows))
    next_slot[b, :nn, :nn] = np.where(table >= 0, slot_of_row[table], -1)
    dist_all[b, :nn, :nn] = dist
    start_all[b], dest_all[b] = start, end
  teacher = rng.random((t_max, batch_size)) < beta
  return ShortestPathBatch(base.inputs, base.targets, base.mask, answer,
                           teacher, node_labels, out_label, out_dst,
                           next_slot, dist_all, start_all, dest_all)


TASKS = {cls.name: cls for cls in (Traversal, ShortestPath, Inference)}


def task_class(name: str):
  """The task class called ``name``; raises ValueError naming it if none."""
  if name not in TASKS:
    raise ValueError(f"unknown graph task {name!r}; known: {sorted(TASKS)}")
  return TASKS[name]
