"""Random graphs (PROTOCOL §1.4) and graph algorithms, as pure NumPy.

Every function is a pure function of its arguments: randomness comes only
from the ``np.random.Generator`` passed in, so a batch is a pure function of
the seed that made the generator.

Choices where the paper is silent or ambiguous (also in README.md):

* Node count: uniform integer in the lesson's range, both ends inclusive.
* Positions: uniform in the unit square; neighbours by Euclidean distance.
* Out-degree: K uniform inclusive per node, then clipped to ``N - 1`` (a
  3-node graph cannot give a node 4 distinct neighbours). No self-loops.
* Labels, PROTOCOL §1.4.5 reading (a): the N unique numbers drawn from
  [0, 999] *are* the node labels (so node labels are unique in a graph), and
  each node's out-edge labels are drawn without replacement from those same
  N numbers (unique per source, repeating across the graph).
* Inference graphs (``edge_labels="digits"``): each node's out-edge labels are
  drawn without replacement from 0-9 (unique per source, so following a
  relation is deterministic).
* Connectivity: whatever the K-nearest-neighbour procedure gives. Every node
  has out-degree >= 1, so walks never get stuck, but the graph need not be
  strongly connected; tasks that need a path sample (start, end) pairs among
  the reachable ones.
"""

from __future__ import annotations

import dataclasses
from typing import Optional, Sequence, Tuple

import numpy as np

UNREACHABLE = -1


@dataclasses.dataclass(frozen=True)
class Graph:
  """A directed graph with labelled nodes and edges.

  Attributes:
    node_labels: ``[N]`` int, unique, in [0, 999].
    edges: ``[E, 3]`` int rows ``(source index, edge label, destination
      index)``; edge labels unique among one source's out-edges.
    positions: ``[N, 2]`` float or ``None``.
    names: optional node names (test graphs).
    edge_names: optional ``{edge label: name}`` (test graphs).
  """

  node_labels: np.ndarray
  edges: np.ndarray
  positions: Optional[np.ndarray] = None
  names: Optional[Tuple[str, ...]] = None
  edge_names: Optional[dict] = None

  @property
  def num_nodes(self) -> int:
    return len(self.node_labels)

  def triples(self) -> np.ndarray:
    """``[E, 3]`` label triples (source label, edge label, dest label)."""
    e = self.edges
    return np.stack([self.node_labels[e[:, 0]], e[:, 1],
                     self.node_labels[e[:, 2]]], -1)

  def out_edges(self, node: int) -> np.ndarray:
    """``[k, 3]`` rows of ``edges`` leaving ``node``, by edge label."""
    rows = self.edges[self.edges[:, 0] == node]
    return rows[np.argsort(rows[:, 1], kind="stable")]

  def out_degrees(self) -> np.ndarray:
    return np.bincount(self.edges[:, 0], minlength=self.num_nodes)

  def transition(self, num_edge_labels: int = 1000) -> np.ndarray:
    """``[N, num_edge_labels]`` destination index per (node, label), or -1."""
    table = np.full((self.num_nodes, num_edge_labels), -1, np.int64)
    table[self.edges[:, 0], self.edges[:, 1]] = self.edges[:, 2]
    return table

  def validate(self):
    """Raises ValueError if labels repeat where they must be unique."""
    if len(set(self.node_labels.tolist())) != self.num_nodes:
      raise ValueError("node labels are not unique")
    pairs = {(int(s), int(l)) for s, l, _ in self.edges}
    if len(pairs) != len(self.edges):
      raise ValueError("edge labels repeat among one node's out-edges")
    if np.any(self.edges[:, 0] == self.edges[:, 2]):
      raise ValueError("self-loop")


def check_range(name: str, bounds: Sequence[int], minimum: int = 0):
  low, high = bounds
  for value in (low, high):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
      raise ValueError(f"{name} bounds must be ints, got {bounds!r}")
  if not minimum <= low <= high:
    raise ValueError(f"{name} must satisfy {minimum} <= low <= high, "
                     f"got {bounds!r}")


def random_graph(rng: np.random.Generator, nodes: Tuple[int, int],
                 out_degree: Tuple[int, int],
                 edge_labels: str = "nodes") -> Graph:
  """A K-nearest-neighbour graph in the unit square (PROTOCOL §1.4).

  Args:
    rng: the only source of randomness.
    nodes: inclusive range of N (N >= 2).
    out_degree: inclusive range of K (K >= 1), clipped to N - 1 per node.
    edge_labels: ``"nodes"`` (traversal, shortest path: drawn from the node
      labels) or ``"digits"`` (inference: drawn from 0-9).
  """
  check_range("nodes", nodes, 2)
  check_range("out_degree", out_degree, 1)
  if edge_labels not in ("nodes", "digits"):
    raise ValueError(f"edge_labels must be 'nodes' or 'digits', got "
                     f"{edge_labels!r}")
  if edge_labels == "digits" and out_degree[1] > 10:
    raise ValueError("digit edge labels allow out-degree <= 10")
  n = int(rng.integers(nodes[0], nodes[1] + 1))
  positions = rng.random((n, 2))
  labels = rng.choice(1000, n, replace=False)
  degrees = np.minimum(rng.integers(out_degree[0], out_degree[1] + 1, n),
                       n - 1)
  distance = np.linalg.norm(positions[:, None] - positions[None], axis=-1)
  np.fill_diagonal(distance, np.inf)
  order = np.argsort(distance, axis=1, kind="stable")
  pool = labels if edge_labels == "nodes" else np.arange(10)
  # Per node, the first K of a uniform random permutation of the pool: K
  # labels without replacement (one vectorised draw for all nodes).
  chosen = pool[np.argsort(rng.random((n, len(pool))), axis=1)]
  width = int(degrees.max())
  take = np.arange(width)[None, :] < degrees[:, None]
  sources = np.broadcast_to(np.arange(n)[:, None], take.shape)
  rows = np.stack([sources[take], chosen[:, :width][take],
                   order[:, :width][take]], -1)
  return Graph(labels.astype(np.int64), rows.astype(np.int64), positions)


def distances(graph: Graph) -> np.ndarray:
  """``[N, N]`` shortest-path lengths in edges; ``UNREACHABLE`` if none."""
  n = graph.num_nodes
  adjacency = np.zeros((n, n), bool)
  adjacency[graph.edges[:, 0], graph.edges[:, 2]] = True
  dist = np.full((n, n), UNREACHABLE, np.int64)
  np.fill_diagonal(dist, 0)
  frontier = np.eye(n, dtype=bool)
  for step in range(1, n):
    frontier = (frontier.astype(np.int64) @ adjacency) > 0
    frontier &= dist == UNREACHABLE
    if not frontier.any():
      break
    dist[frontier] = step
  return dist


def next_edges(graph: Graph, dist: Optional[np.ndarray] = None) -> np.ndarray:
  """``[N, N]`` row index into ``edges`` of the optimal first move, or -1.

  ``next[i, j]`` is the out-edge of ``i`` that starts a shortest path to
  ``j``. Ties (NOT STATED in the paper) go to the smallest edge label.
  ``-1`` where ``i == j`` or ``j`` is unreachable from ``i``.
  """
  if dist is None:
    dist = distances(graph)
  n = graph.num_nodes
  best = np.full((n, n), -1, np.int64)
  best_label = np.full((n, n), np.iinfo(np.int64).max)
  for row, (source, label, dest) in enumerate(graph.edges):
    wanted = dist[source] - 1
    good = (dist[source] > 0) & (dist[dest] == wanted) & (label < best_label[
        source])
    best[source, good] = row
    best_label[source, good] = label
  return best


def shortest_path(graph: Graph, start: int, end: int,
                  table: Optional[np.ndarray] = None) -> np.ndarray:
  """``[L, 3]`` ``edges`` rows of the tie-broken shortest path start -> end."""
  if table is None:
    table = next_edges(graph)
  rows = []
  node = start
  while node != end:
    row = table[node, end]
    if row < 0:
      raise ValueError(f"node {end} is unreachable from node {start}")
    rows.append(graph.edges[row])
    node = int(graph.edges[row, 2])
  return np.asarray(rows, np.int64).reshape(-1, 3)


def random_walk(rng: np.random.Generator, graph: Graph, start: int,
                length: int) -> np.ndarray:
  """``[length, 3]`` ``edges`` rows of a uniform random walk (revisits ok)."""
  rows = []
  node = start
  for _ in range(length):
    out = graph.out_edges(node)
    row = out[rng.integers(len(out))]
    rows.append(row)
    node = int(row[2])
  return np.asarray(rows, np.int64).reshape(-1, 3)


# Inference relations (PROTOCOL §1.5): labels 10 + 100 * (L - 2) + i for the
# i-th (0..99) sequence of length L (2..5), so 10-409; 410, inside the
# paper's printed range 10-410, is unused (400 relations). The table is
# generated once from RELATION_SEED; sequences are distinct within a length.
RELATION_SEED = 2016
RELATION_LENGTHS = (2, 3, 4, 5)
RELATIONS_PER_LENGTH = 100
FIRST_RELATION_LABEL = 10
# Named family relations placed first in the length-4 block so that the
# family-tree test (family_tree.py) can query them; the rest are random.
# Family edge labels: 0 mother, 1 father, 2 son, 3 daughter, 4 brother,
# 5 sister, 6 husband, 7 wife.
RESERVED_RELATIONS = (
    (0, 0, 1, 2),  # maternal great-uncle: mother's mother's father's son
    (0, 1, 1, 3),  # maternal great-aunt: mother's father's father's daughter
    (1, 0, 1, 2),  # paternal great-uncle
    (1, 1, 1, 3),  # paternal great-aunt
    (0, 0, 4, 2),  # first cousin once removed: mother's mother's brother's
                   # son
    (0, 5, 3, 6),  # mother's sister's daughter's husband
    (1, 4, 2, 2),  # father's brother's son's son
    (6, 0, 0, 5),  # husband's mother's mother's sister
)


def relation_table(seed: int = RELATION_SEED) -> dict:
  """``{relation label: tuple of edge labels}``, 400 entries (fixed)."""
  rng = np.random.default_rng(seed)
  table = {}
  for block, length in enumerate(RELATION_LENGTHS):
    seen = []
    if length == 4:
      seen.extend(RESERVED_RELATIONS)
    while len(seen) < RELATIONS_PER_LENGTH:
      sequence = tuple(int(x) for x in rng.integers(0, 10, length))
      if sequence not in seen:
        seen.append(sequence)
    for i, sequence in enumerate(seen):
      table[FIRST_RELATION_LABEL + RELATIONS_PER_LENGTH * block + i] = sequence
  return table


def follow(graph: Graph, start: int, sequence: Sequence[int]) -> int:
  """Node reached from ``start`` along edge labels ``sequence``, or -1."""
  table = graph.transition()
  node = start
  for label in sequence:
    node = int(table[node, label])
    if node < 0:
      return -1
  return node


def follow_all(graph: Graph, sequences: np.ndarray,
               table: Optional[np.ndarray] = None) -> np.ndarray:
  """``[N, S]`` end node of every (start, sequence) pair, -1 if it breaks.

  Args:
    sequences: ``[S, L]`` edge labels in 0-9.
    table: ``stuck_transition(graph)`` if already computed.
  """
  if table is None:
    table = stuck_transition(graph)
  node = np.broadcast_to(np.arange(graph.num_nodes)[:, None],
                         (graph.num_nodes, len(sequences))).copy()
  for step in range(sequences.shape[1]):
    node = table[node, sequences[None, :, step]]
  return node


def last_label_ambiguous(graph: Graph, sequences: np.ndarray) -> np.ndarray:
  """``[S]`` bool: whether the edges labelled like the last edge of each
  sequence lead to more than one node.

  Where they lead to a single node, that node is the end of every walk of
  the sequence, from any start: the answer needs no walking.

  Args:
    sequences: ``[S, L]`` edge labels in 0-9.
  """
  leads_to = np.zeros((10, graph.num_nodes), bool)
  leads_to[graph.edges[:, 1], graph.edges[:, 2]] = True
  return leads_to.sum(1)[np.asarray(sequences)[:, -1]] > 1


def stuck_transition(graph: Graph) -> np.ndarray:
  """``[N + 1, 10]`` transition table whose last row (index -1) is all -1."""
  return np.concatenate([graph.transition(10),
                         np.full((1, 10), -1, np.int64)])
