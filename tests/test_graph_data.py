"""Graph-task data: encoding, random graphs, episodes, loss (issue 14)."""

import collections
import itertools

import jax.numpy as jnp
import numpy as np
import pytest

from experiments.graphs import encoding
from experiments.graphs import generate
from experiments.graphs import tasks
from experiments.graphs.tasks import Lesson


def bfs(edges, n, start):
  """Independent BFS distances from ``start`` (-1 unreachable)."""
  adjacency = collections.defaultdict(list)
  for s, _, d in edges:
    adjacency[int(s)].append(int(d))
  dist = [-1] * n
  dist[start] = 0
  queue = collections.deque([start])
  while queue:
    node = queue.popleft()
    for nxt in adjacency[node]:
      if dist[nxt] < 0:
        dist[nxt] = dist[node] + 1
        queue.append(nxt)
  return dist


def decode_episode(batch, b):
  """Splits episode ``b`` by its flags into phases of decoded triples."""
  phases = []
  used = np.nonzero(batch.inputs[:, b].any(-1) | (batch.mask[:, b] > 0))[0]
  for t in range(used.max() + 1):  # Left-aligned: padding only at the end.
    x = batch.inputs[t, b]
    triple = encoding.decode_triple(x)
    target = (encoding.decode_triple(batch.targets[t, b])
              if batch.mask[t, b] else None)
    if x[encoding.PHASE_CHANNEL] or not phases:
      phases.append([])
    phases[-1].append((triple, bool(x[encoding.ANSWER_CHANNEL]), target))
  return phases


@pytest.mark.parametrize("triple", [(0, 0, 0), (999, 999, 999), (7, 42, 305),
                                    (123, encoding.BLANK, 9),
                                    (encoding.BLANK,) * 3])
def test_encoding_round_trip(triple):
  vector = encoding.encode_triple(triple)
  assert vector.shape == (90,)
  assert encoding.decode_triple(vector) == triple
  for field, label in enumerate(triple):
    part = vector[30 * field:30 * field + 30]
    if label == encoding.BLANK:
      assert not part.any()
    else:
      assert part.sum() == 3
      digits = [int(c) for c in f"{label:03d}"]  # most significant first
      assert [int(np.argmax(part[10 * i:10 * i + 10])) for i in range(3)] \
          == digits


def test_encoding_vectorised_and_jax_agree():
  rng = np.random.default_rng(0)
  triples = rng.integers(0, 1000, (50, 3))
  expected = np.stack([encoding.encode_triple(t) for t in triples])
  np.testing.assert_array_equal(encoding.encode_triples(triples), expected)
  np.testing.assert_array_equal(
      np.asarray(encoding.encode_triples_jax(jnp.asarray(triples))), expected)


@pytest.mark.parametrize("bad", [(1000, 0, 0), (-2, 0, 0), (1, 2)])
def test_encoding_rejects_bad_labels(bad):
  with pytest.raises(ValueError):
    encoding.encode_triple(bad)


def test_loss_is_nine_digit_cross_entropy_on_masked_steps():
  rng = np.random.default_rng(1)
  logits = rng.normal(size=(4, 2, 90)).astype(np.float32)
  triples = rng.integers(0, 1000, (4, 2, 3))
  targets = encoding.encode_triples(triples.reshape(-1, 3)).reshape(4, 2, 90)
  mask = np.array([[0, 1], [1, 1], [0, 0], [1, 0]], np.float32)
  expected = 0.0
  for t, b in itertools.product(range(4), range(2)):
    if not mask[t, b]:
      continue
    for k in range(9):
      z = logits[t, b, 10 * k:10 * k + 10]
      digit = int(np.argmax(targets[t, b, 10 * k:10 * k + 10]))
      expected -= z[digit] - np.log(np.sum(np.exp(z)))
  loss = encoding.digit_loss(jnp.asarray(logits), jnp.asarray(targets),
                             jnp.asarray(mask))
  np.testing.assert_allclose(float(loss), expected / 2, rtol=1e-5)
  # Modal prediction: the targets themselves as logits are fully correct.
  assert encoding.episode_correct(targets * 10, targets, mask).all()
  wrong = targets.copy()
  wrong[3, 0] = np.roll(wrong[3, 0], 1)
  assert encoding.episode_correct(wrong * 10, targets, mask).tolist() == [
      False, True]


@pytest.mark.parametrize("nodes,degree,labels", [
    ((3, 10), (2, 4), "nodes"), ((10, 40), (2, 6), "nodes"),
    ((20, 25), (2, 4), "digits"), ((5, 10), (1, 2), "nodes")])
def test_random_graph_invariants(nodes, degree, labels):
  rng = np.random.default_rng(2)
  sizes = set()
  for _ in range(30):
    g = generate.random_graph(rng, nodes, degree, edge_labels=labels)
    n = g.num_nodes
    sizes.add(n)
    assert nodes[0] <= n <= nodes[1]
    out = np.bincount(g.edges[:, 0], minlength=n)
    assert np.all(out >= min(degree[0], n - 1))
    assert np.all(out <= min(degree[1], n - 1))
    assert len(set(g.node_labels.tolist())) == n
    assert np.all((g.node_labels >= 0) & (g.node_labels <= 999))
    pairs = [(int(s), int(l)) for s, l, _ in g.edges]
    assert len(pairs) == len(set(pairs))            # unique per source
    assert not np.any(g.edges[:, 0] == g.edges[:, 2])  # no self-loops
    pool = (set(range(10)) if labels == "digits"
            else set(g.node_labels.tolist()))
    assert set(g.edges[:, 1].tolist()) <= pool
    # Out-edges go to the K nearest (Euclidean) neighbours.
    for s in range(n):
      dests = g.edges[g.edges[:, 0] == s, 2]
      dist = np.linalg.norm(g.positions - g.positions[s], axis=1)
      dist[s] = np.inf
      assert dist[dests].max() <= np.sort(dist)[len(dests) - 1] + 1e-12
  assert len(sizes) > 1 or nodes[0] == nodes[1]


def test_random_graph_is_a_pure_function_of_the_seed():
  a = generate.random_graph(np.random.default_rng(5), (10, 20), (2, 4))
  b = generate.random_graph(np.random.default_rng(5), (10, 20), (2, 4))
  np.testing.assert_array_equal(a.edges, b.edges)
  for task in (tasks.Traversal(Lesson((5, 10), (2, 4), (1, 4))),
               tasks.ShortestPath(Lesson((5, 10), (1, 2), (2, 2)))):
    x = task.sample(np.random.default_rng(9), 3)
    y = task.sample(np.random.default_rng(9), 3)
    for u, v in zip(x, y):
      np.testing.assert_array_equal(u, v)


def test_distances_and_shortest_paths_match_bfs():
  rng = np.random.default_rng(3)
  for _ in range(40):
    g = generate.random_graph(rng, (3, 12), (1, 3))
    dist = generate.distances(g)
    table = generate.next_edges(g, dist)
    for s in range(g.num_nodes):
      expected = bfs(g.edges, g.num_nodes, s)
      assert dist[s].tolist() == expected
      for e in range(g.num_nodes):
        if expected[e] <= 0:
          continue
        path = generate.shortest_path(g, s, e, table)
        assert len(path) == expected[e]
        assert path[0, 0] == s and path[-1, 2] == e
        assert all(path[i, 2] == path[i + 1, 0] for i in range(len(path) - 1))
        edge_set = {tuple(r) for r in g.edges.tolist()}
        assert all(tuple(r) in edge_set for r in path.tolist())


def test_traversal_episode_structure_from_the_batch_alone():
  task = tasks.Traversal(Lesson((5, 10), (2, 4), (1, 4)))
  batch = task.sample(np.random.default_rng(4), 8)
  assert batch.inputs.shape == (task.max_time, 8, 92)
  for b in range(8):
    description, query, answer = decode_episode(batch, b)
    links = {(s, e): d for (s, e, d), _, _ in description}
    assert len(links) == len(description)       # (source, edge) unique
    assert not any(flag for _, flag, _ in description + query)
    assert all(flag for _, flag, _ in answer)
    start, first, blank = query[0][0]
    assert blank == encoding.BLANK
    labels = [first] + [e for (s, e, d), _, _ in query[1:]]
    assert all(s == d == encoding.BLANK for (s, e, d), _, _ in query[1:])
    node, expected = start, []
    for label in labels:
      expected.append((node, label, links[(node, label)]))
      node = links[(node, label)]
    assert [t for _, _, t in answer] == expected + [encoding.TERMINATION]
    assert all(x == (encoding.BLANK,) * 3 for x, _, _ in answer)
  # Loss only on answer steps: one per path edge plus termination.
  assert batch.mask.sum() == sum(len(decode_episode(batch, b)[2])
                                 for b in range(8))


def test_inference_episode_follows_the_fixed_relation():
  relations = generate.relation_table()
  assert len(relations) == 400
  assert sorted(relations) == list(range(10, 410))
  for length in (2, 3, 4, 5):
    seqs = [s for s in relations.values() if len(s) == length]
    assert len(seqs) == 100 and len(set(seqs)) == 100
  assert relations == generate.relation_table()  # fixed
  task = tasks.Inference(Lesson((6, 12), (2, 4), (2, 5), 3))
  batch = task.sample(np.random.default_rng(6), 4)
  for b in range(4):
    phases = decode_episode(batch, b)
    description = phases[0]
    links = {(s, e): d for (s, e, d), _, _ in description}
    assert all(0 <= e <= 9 for (_, e, _), _, _ in description)
    rounds = phases[1:]
    assert len(rounds) == 9  # 3 x (query, planning, answer)
    for query, planning, answer in zip(rounds[::3], rounds[1::3],
                                       rounds[2::3]):
      (start, relation, _), = [x for x, _, _ in query]
      assert len(planning) == tasks.PLANNING_STEPS
      node = start
      for label in relations[relation]:
        node = links[(node, label)]
      assert [t for _, _, t in answer] == [(start, relation, node),
                                           encoding.TERMINATION]


def test_last_label_ambiguous_against_brute_force():
  rng = np.random.default_rng(11)
  for _ in range(30):
    graph = generate.random_graph(rng, (3, 8), (2, 4), edge_labels="digits")
    sequences = rng.integers(0, 10, (25, 3))
    expect = [len({int(d) for _, l, d in graph.edges if l == seq[-1]}) > 1
              for seq in sequences]
    assert generate.last_label_ambiguous(graph, sequences).tolist() == expect


def _query_rounds(batch, b, relations):
  """``(last-label ambiguous?, right end?)`` of each query of episode b,
  from its decoded inputs and targets alone."""
  phases = decode_episode(batch, b)
  edges = [x for x, _, _ in phases[0]]
  links = {(s, e): d for s, e, d in edges}
  rounds = []
  for query, answer in zip(phases[1::3], phases[3::3]):
    (start, relation, _), = [x for x, _, _ in query]
    node = start
    for label in relations[relation]:
      node = links[(node, label)]
    ends = {d for _, e, d in edges if e == relations[relation][-1]}
    rounds.append((len(ends) > 1, answer[0][2] == (start, relation, node)))
  return rounds


@pytest.mark.parametrize("fraction", [0.0, 1.0])
def test_inference_ambiguous_fraction_draws_queries_the_last_label_misses(
    fraction):
  relations = generate.relation_table()
  lesson = Lesson((3, 3), (2, 2), (2, 2), 3)  # inference lesson 1
  task = tasks.Inference(lesson, ambiguous_fraction=fraction)
  batch = task.sample(np.random.default_rng(3), 40)
  rounds = [r for b in range(40) for r in _query_rounds(batch, b, relations)]
  assert all(right for _, right in rounds)
  share = np.mean([ambiguous for ambiguous, _ in rounds])
  if fraction:
    assert share == 1.0
  else:  # The lesson's own queries: about a third defeat the shortcut.
    assert 0.15 < share < 0.6


def test_inference_evaluation_draws_the_lessons_own_queries():
  lesson = Lesson((3, 3), (2, 2), (2, 2), 3)
  plain, skewed = tasks.Inference(lesson), tasks.Inference(
      lesson, ambiguous_fraction=1.0)
  own = plain.sample(np.random.default_rng(5), 6)
  evaluated = skewed.evaluation_sample(np.random.default_rng(5), 6)
  trained = skewed.sample(np.random.default_rng(5), 6)
  assert np.array_equal(own.inputs, evaluated.inputs)
  assert np.array_equal(own.targets, evaluated.targets)
  assert not np.array_equal(own.inputs, trained.inputs)
  with pytest.raises(ValueError, match="ambiguous_fraction must be in"):
    tasks.Inference(lesson, ambiguous_fraction=1.5)


def test_shortest_path_targets_are_bfs_shortest_paths():
  task = tasks.ShortestPath(Lesson((5, 12), (1, 3), (2, 4)))
  batch = task.sample(np.random.default_rng(7), 16, beta=1.0)
  for b in range(16):
    description, query, planning, answer = decode_episode(batch, b)
    assert len(planning) == tasks.PLANNING_STEPS
    triples = [x for x, _, _ in description]
    index = {l: i for i, l in enumerate(sorted({t[0] for t in triples} |
                                               {t[2] for t in triples}))}
    edges = [(index[s], e, index[d]) for s, e, d in triples]
    (start, blank, end), = [x for x, _, _ in query]
    assert blank == encoding.BLANK
    targets = [t for _, _, t in answer if t is not None]
    assert targets[-1] == encoding.TERMINATION
    path = targets[:-1]
    assert 2 <= len(path) <= 4
    assert len(path) == bfs(edges, len(index), index[start])[index[end]]
    assert path[0][0] == start and path[-1][2] == end
    assert all(t in triples for t in path)
    # Each answer input is the previous step's target (teacher forcing).
    fed = [x for x, _, _ in answer][:len(targets)]
    assert fed == [(encoding.BLANK,) * 3] + path


def test_generation_is_fast_enough():
  """Final lessons must feed a trainer: >= 20 episodes/s even on a busy CPU."""
  import time
  for task in (tasks.Traversal(Lesson((10, 40), (2, 6), (1, 20))),
               tasks.Inference(Lesson((20, 25), (2, 4), (2, 5), 3)),
               tasks.ShortestPath(Lesson((20, 25), (2, 6), (2, 5)))):
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    task.sample(rng, 16)
    assert 16 / (time.perf_counter() - start) > 20


@pytest.mark.parametrize("make", [
    lambda: tasks.Lesson((0, 3), (1, 1), (1, 1)),
    lambda: tasks.Lesson((5, 3), (1, 1), (1, 1)),
    lambda: tasks.Lesson((3, 5), (1, 2), (1, 1), queries=0),
    lambda: tasks.ShortestPath(Lesson((3, 5), (1, 2), (1, 1)), beta=2.0),
    lambda: tasks.Traversal(Lesson((3, 5), (1, 2), (1, 1)), pad_to=3),
    lambda: generate.random_graph(np.random.default_rng(0), (3, 5), (1, 2),
                                  edge_labels="letters"),
])
def test_bad_configuration_raises(make):
  with pytest.raises(ValueError):
    make()


def test_unknown_task_raises_naming_it():
  with pytest.raises(ValueError, match="'route_finding'"):
    tasks.task_class("route_finding")
