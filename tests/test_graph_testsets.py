"""Test graphs: the London Underground zone-1 graph and the family tree."""

import csv
import shutil

import numpy as np
import pytest

from experiments.graphs import encoding
from experiments.graphs import family_tree
from experiments.graphs import generate
from experiments.graphs import underground


@pytest.fixture(scope="module")
def tube():
  return underground.load()


def test_underground_counts(tube, capsys):
  # Independent of the builder: zone-1 stations that the connections put on
  # two or more Underground lines (no DLR = 13, no East London Line = 5).
  with open(underground.DATA / "london.stations.csv") as f:
    zone1 = {r["id"] for r in csv.DictReader(f) if r["zone"] == "1"}
  lines = {}
  with open(underground.DATA / "london.connections.csv") as f:
    for r in csv.DictReader(f):
      if r["line"] not in ("5", "13"):
        for s in (r["station1"], r["station2"]):
          lines.setdefault(s, set()).add(r["line"])
  expected = sorted(int(s) for s in zone1 if len(lines.get(s, ())) >= 2)
  assert sorted(tube.graph.node_labels.tolist()) == expected
  assert len(expected) == 40
  assert len(tube.lines) == 11
  counts = underground.summary(tube)
  assert counts["stations"] == 40 and counts["edges"] == len(tube.graph.edges)
  underground.print_summary(tube)
  out = capsys.readouterr().out
  assert f"40 stations, 11 lines, {counts['edges']} directed edges" in out
  # Real-world facts: the Victoria line's zone-1 interchanges are King's
  # Cross, Euston, Warren Street, Oxford Circus, Green Park and Victoria
  # (5 links, 10 directed edges); Waterloo & City is Waterloo-Bank.
  per_line = np.bincount(tube.graph.edges[:, 1] // 16, minlength=16)
  assert per_line[11] == 10
  assert per_line[12] == 2


def test_underground_known_edges(tube):
  assert underground.edge(tube, "Oxford Circus", "Green Park") == [
      "Victoria S"]
  assert underground.edge(tube, "Green Park", "Oxford Circus") == [
      "Victoria N"]
  assert underground.edge(tube, "Victoria", "Green Park") == ["Victoria N"]
  assert underground.edge(tube, "Waterloo", "Bank") == ["Waterloo & City E"]
  assert "Central E" in underground.edge(tube, "Oxford Circus",
                                         "Tottenham Court Road")
  assert "Goodge Street" not in tube.graph.names  # zone 1, one line
  assert "Canary Wharf" not in tube.graph.names   # not zone 1


def test_underground_edges_are_symmetric_and_unique(tube):
  g = tube.graph
  g.validate()
  pairs = [(int(s), int(l)) for s, l, _ in g.edges]
  assert len(pairs) == len(set(pairs))
  links = {(int(s), int(d), int(l) // 16) for s, l, d in g.edges}
  assert all((d, s, line) in links for s, d, line in links)
  assert np.all(generate.distances(g) >= 0)  # strongly connected


def write_network(path, stations, connections):
  """A miniature tubemaps data set in ``path``."""
  path.mkdir(exist_ok=True)
  with open(path / "london.stations.csv", "w") as f:
    f.write('"id","latitude","longitude","name","zone"\n')
    for sid, lat, lon, name in stations:
      f.write(f'{sid},{lat},{lon},"{name}",1\n')
  with open(path / "london.lines.csv", "w") as f:
    f.write('"line","name"\n1,"Red Line"\n2,"Blue Line"\n')
  with open(path / "london.connections.csv", "w") as f:
    f.write('"station1","station2","line","time"\n')
    for a, b, line in connections:
      f.write(f"{a},{b},{line},1\n")


def test_branch_refines_direction_then_keeps_nearer(tmp_path):
  # A branches north on the Red line to B (NNW) and C (NNE): the same
  # 4- and 8-point direction, so the 16-point compass must separate them.
  write_network(tmp_path / "a",
                [(1, 51.50, -0.1, "A"), (2, 51.51, -0.1036, "B"),
                 (3, 51.51, -0.0964, "C")],
                [(1, 2, 1), (1, 3, 1), (1, 2, 2), (2, 3, 2), (1, 3, 2)])
  u = underground.load(tmp_path / "a")
  assert sorted(underground.edge(u, "A", "B") +
                underground.edge(u, "A", "C")) == [
                    "Blue NNE", "Blue NNW", "Red NNE", "Red NNW"]
  assert not u.dropped
  # B and D both due north of A on the Red line: the nearer (B) is kept.
  write_network(tmp_path / "b",
                [(1, 51.50, -0.1, "A"), (2, 51.51, -0.1, "B"),
                 (4, 51.52, -0.1001, "D")],
                [(1, 2, 1), (1, 4, 1), (1, 2, 2), (2, 4, 2), (1, 4, 2)])
  u = underground.load(tmp_path / "b")
  assert ("A", "D", "Red") in u.dropped
  assert underground.edge(u, "A", "B")[0].startswith("Red")
  assert not [e for e in underground.edge(u, "A", "D") if "Red" in e]
  u.graph.validate()


def test_malformed_csv_raises_naming_the_file(tmp_path):
  bad = tmp_path / "bad"
  shutil.copytree(underground.DATA, bad)
  (bad / "london.stations.csv").chmod(0o644)
  with open(bad / "london.stations.csv", "a") as f:
    f.write('999,not-a-latitude,-0.1,"Nowhere",NULL,1,1,0\n')
  with pytest.raises(ValueError, match="london.stations.csv, line"):
    underground.load(bad)
  lines = tmp_path / "lines"
  shutil.copytree(underground.DATA, lines)
  (lines / "london.lines.csv").chmod(0o644)
  (lines / "london.lines.csv").write_text('"id","colour"\n1,"red"\n')
  with pytest.raises(ValueError, match="london.lines.csv: missing columns"):
    underground.load(lines)
  with pytest.raises(ValueError, match="no such file"):
    underground.load(tmp_path / "absent")


def test_underground_evaluation_episodes(tube):
  rng = np.random.default_rng(0)
  batch = underground.traversal_batch(rng, tube, 5)
  assert batch.mask.sum(0).tolist() == [8] * 5  # 7 steps + termination
  description = {encoding.decode_triple(x)
                 for x in batch.inputs[:len(tube.graph.edges), 0]}
  assert description == {tuple(t) for t in tube.graph.triples().tolist()}
  pairs = underground.shortest_path_pairs(tube)
  assert pairs
  for a, b in pairs[:20]:  # Independent check: no shorter path.
    reach = {a}
    for _ in range(3):
      reach |= {int(d) for s, _, d in tube.graph.edges if s in reach}
    assert b not in reach
  sp = underground.shortest_path_batch(rng, tube, pairs[:3])
  assert sp.mask.sum(0).tolist() == [5] * 3  # 4 moves + termination
  assert not sp.teacher.any()


def test_family_tree_relations():
  g = family_tree.build()
  g.validate()  # labels unique per person
  names = list(g.names)
  people = {p[0]: p for p in family_tree.PEOPLE}
  # Freya's mother's mother's father's son is Fergus (Fig. 2c's example).
  mother = people["Freya"][3]
  grandmother = people[mother][3]
  great_grandfather = people[grandmother][2]
  sons = [p[0] for p in family_tree.PEOPLE
          if p[2] == great_grandfather and p[1] == "M"]
  assert sons == ["Fergus"]
  queries = family_tree.relation_queries(g)
  relations = generate.relation_table()
  assert all(len(relations[r]) == 4 for _, r, _ in queries)
  named = [q for q in queries if names[q[0]] == "Freya" and
           relations[q[1]] == (0, 0, 1, 2)]
  assert [names[q[2]] for q in named] == ["Fergus"]
  assert "maternal great-uncle" in family_tree.describe(named[0], g)
  # Every query's end follows the edges (independent walk).
  links = {(int(s), int(l)): int(d) for s, l, d in g.edges}
  for start, relation, end in queries:
    node = start
    for label in relations[relation]:
      node = links[(node, label)]
    assert node == end
  batch = family_tree.inference_batch(np.random.default_rng(0), queries[:7])
  assert batch.inputs.shape[1] == 3
  assert batch.mask.sum() == 2 * 7
