"""The London Underground zone-1 interchange graph (PROTOCOL §1.6).

Built from the public ``tubemaps`` CSVs in ``data/london_underground/``
(ISC licence, about 2015; see the README there). Construction:

1. Lines: the eleven Underground lines of ``london.lines.csv``; the
   Docklands Light Railway (13) and the East London Line (5, Overground by
   2015) are left out.
2. Stations: zone exactly 1 (the 1.5 boundary stations are out). An
   *interchange* is a zone-1 station that ``london.connections.csv``
   connects on two or more of those lines (Bank's DLR link does not count;
   the ``total_lines`` column is not used).
3. Edges: for each line, from each interchange on it, walk the line's
   connections through zone-1 stations that are not interchanges; every
   interchange reached is joined by a directed edge (both directions are
   built, one from each end). Walks stop at interchanges and never leave
   zone 1, so two interchanges are joined when the line runs between them
   within zone 1 with no other interchange in between.
4. Edge label: line + compass direction from source to destination,
   e.g. "Victoria S". The bearing uses longitude scaled by cos(latitude).
   Directions are the 4 points N/E/S/W; when two of a station's out-edges
   on one line get the same point (branches, loops), that station's edges
   on that line use the 8-point compass, then the 16-point one; if two
   still coincide the nearer destination is kept and the other edge
   dropped (``Underground.dropped`` lists them; none with this data).
5. Label numbers (0-999 space): a station's node label is its CSV ``id``
   (1-303); an edge label is ``16 * line id + d`` where ``d`` is the
   16-point compass index (0 = N, 4 = E, 8 = S, 12 = W, 2 = NE, 1 = NNE,
   ...), so 16-207. ``Graph.edge_names`` maps labels to "Line D" names.

``print_summary()`` prints the station, line and edge counts.
"""

from __future__ import annotations

import csv
import dataclasses
import math
import pathlib
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from experiments.graphs import generate

DATA = pathlib.Path(__file__).parent / "data" / "london_underground"
EXCLUDED_LINES = (5, 13)  # East London Line, Docklands Light Railway.
POINTS_16 = ("N", "NNE", "NE", "ENE", "E", "ESE", "SE", "SSE", "S", "SSW",
             "SW", "WSW", "W", "WNW", "NW", "NNW")


@dataclasses.dataclass(frozen=True)
class Underground:
  """The contracted graph and how it was built.

  Attributes:
    graph: node labels = station ids, names = station names.
    lines: ``{line id: name}`` of the lines with at least one edge.
    dropped: ``(source, destination, line)`` station names of edges dropped
      by the uniqueness rule.
  """

  graph: generate.Graph
  lines: Dict[int, str]
  dropped: Tuple[Tuple[str, str, str], ...]


def _read(path: pathlib.Path, columns: Dict[str, type]) -> List[dict]:
  """Rows of a CSV, converted; ValueError naming the file and line."""
  if not path.exists():
    raise ValueError(f"{path}: no such file")
  with open(path, newline="") as f:
    reader = csv.DictReader(f)
    missing = [c for c in columns if c not in (reader.fieldnames or [])]
    if missing:
      raise ValueError(f"{path}: missing columns {missing}")
    rows = []
    for row in reader:
      try:
        rows.append({c: kind(row[c]) for c, kind in columns.items()})
      except (TypeError, ValueError) as e:
        raise ValueError(f"{path}, line {reader.line_num}: malformed row "
                         f"{row!r}: {e}") from None
  return rows


def _bearing(a: Tuple[float, float], b: Tuple[float, float]) -> float:
  """Compass bearing in degrees (0 = N, 90 = E) from ``a`` to ``b``
  (latitude, longitude)."""
  dx = (b[1] - a[1]) * math.cos(math.radians((a[0] + b[0]) / 2))
  dy = b[0] - a[0]
  return math.degrees(math.atan2(dx, dy)) % 360


def direction_index(bearing: float, points: int) -> int:
  """The 16-point index of the nearest of ``points`` (4, 8 or 16) points."""
  step = 360 / points
  return int(round(bearing / step)) % points * (16 // points)


def load(data: pathlib.Path = DATA) -> Underground:
  """Builds the zone-1 interchange graph from the CSVs in ``data``."""
  stations = _read(data / "london.stations.csv",
                   {"id": int, "latitude": float, "longitude": float,
                    "name": str, "zone": str})
  lines = _read(data / "london.lines.csv", {"line": int, "name": str})
  connections = _read(data / "london.connections.csv",
                      {"station1": int, "station2": int, "line": int})
  by_id = {s["id"]: s for s in stations}
  line_names = {l["line"]: l["name"].replace(" Line", "") for l in lines}
  for c in connections:
    for key in ("station1", "station2"):
      if c[key] not in by_id:
        raise ValueError(f"london.connections.csv: unknown station "
                         f"{c[key]}")
    if c["line"] not in line_names:
      raise ValueError(f"london.connections.csv: unknown line {c['line']}")
  zone1 = {s["id"] for s in stations if s["zone"] == "1"}
  neighbours: Dict[int, Dict[int, set]] = {}
  lines_of: Dict[int, set] = {}
  for c in connections:
    if c["line"] in EXCLUDED_LINES:
      continue
    a, b, line = c["station1"], c["station2"], c["line"]
    per_line = neighbours.setdefault(line, {})
    per_line.setdefault(a, set()).add(b)
    per_line.setdefault(b, set()).add(a)
    lines_of.setdefault(a, set()).add(line)
    lines_of.setdefault(b, set()).add(line)
  interchanges = sorted(s for s in zone1 if len(lines_of.get(s, ())) >= 2)
  position = {s: (by_id[s]["latitude"], by_id[s]["longitude"])
              for s in by_id}

  # (source, line) -> destinations reached along the line.
  reached: Dict[Tuple[int, int], List[int]] = {}
  for line, adjacency in sorted(neighbours.items()):
    for source in interchanges:
      if source not in adjacency:
        continue
      seen, stack, found = {source}, [source], set()
      while stack:
        node = stack.pop()
        for nxt in adjacency[node]:
          if nxt in seen or nxt not in zone1:
            continue
          seen.add(nxt)
          if nxt in interchanges:
            found.add(nxt)
          else:
            stack.append(nxt)
      if found:
        reached[(source, line)] = sorted(found)

  index = {s: i for i, s in enumerate(interchanges)}
  rows, dropped = [], []
  for (source, line), dests in sorted(reached.items()):
    bearings = [_bearing(position[source], position[d]) for d in dests]
    for points in (4, 8, 16):
      dirs = [direction_index(b, points) for b in bearings]
      if len(set(dirs)) == len(dirs):
        break
    distance = [math.dist(position[source], position[d]) for d in dests]
    kept: Dict[int, int] = {}
    for i in np.argsort(distance, kind="stable"):
      if dirs[i] in kept:
        dropped.append((by_id[source]["name"], by_id[dests[i]]["name"],
                        line_names[line]))
        continue
      kept[dirs[i]] = dests[i]
    for direction, dest in sorted(kept.items()):
      rows.append((index[source], 16 * line + direction, index[dest]))
  used_lines = sorted({r[1] // 16 for r in rows})
  edge_names = {16 * line + d: f"{line_names[line]} {POINTS_16[d]}"
                for line in used_lines for d in range(16)}
  graph = generate.Graph(
      np.asarray(interchanges, np.int64), np.asarray(rows, np.int64),
      np.asarray([position[s] for s in interchanges]),
      tuple(by_id[s]["name"] for s in interchanges), edge_names)
  graph.validate()
  return Underground(graph, {l: line_names[l] for l in used_lines},
                     tuple(dropped))


def summary(underground: Optional[Underground] = None) -> Dict[str, int]:
  """``{"stations", "lines", "edges", "dropped"}`` counts."""
  u = underground or load()
  return {"stations": u.graph.num_nodes, "lines": len(u.lines),
          "edges": len(u.graph.edges), "dropped": len(u.dropped)}


def print_summary(underground: Optional[Underground] = None):
  """Prints the counts, then each line's edge count."""
  u = underground or load()
  counts = summary(u)
  print(f"London Underground zone-1 interchange graph: "
        f"{counts['stations']} stations, {counts['lines']} lines, "
        f"{counts['edges']} directed edges "
        f"({counts['dropped']} dropped by the uniqueness rule)")
  per_line = np.bincount(u.graph.edges[:, 1] // 16, minlength=16)
  for line, name in sorted(u.lines.items()):
    print(f"  {name}: {per_line[line]} edges")


def edge(underground: Underground, source: str, dest: str) -> List[str]:
  """Edge names from station ``source`` to ``dest`` (by station name)."""
  g = underground.graph
  names = list(g.names)
  s, d = names.index(source), names.index(dest)
  return [g.edge_names[int(l)] for a, l, b in g.edges if a == s and b == d]


def traversal_walks(rng: np.random.Generator, underground: Underground,
                    count: int, length: int = 7) -> List[np.ndarray]:
  """``count`` random ``length``-step walks from uniform random stations."""
  g = underground.graph
  return [generate.random_walk(rng, g, int(rng.integers(g.num_nodes)),
                               length) for _ in range(count)]


def shortest_path_pairs(underground: Underground,
                        length: int = 4) -> List[Tuple[int, int]]:
  """Every (start, end) station index pair at shortest distance ``length``."""
  dist = generate.distances(underground.graph)
  return [(int(a), int(b)) for a, b in zip(*np.nonzero(dist == length))]


def traversal_batch(rng: np.random.Generator, underground: Underground,
                    count: int, length: int = 7):
  """A ``GraphBatch`` of ``count`` 7-step Underground traversal episodes."""
  from experiments.graphs import tasks  # pylint: disable=g-import-not-at-top
  walks = traversal_walks(rng, underground, count, length)
  return tasks.batch_of([tasks.traversal_episode(rng, underground.graph,
                                                 [w]) for w in walks])


def shortest_path_batch(rng: np.random.Generator, underground: Underground,
                        pairs: Sequence[Tuple[int, int]], beta: float = 0.0):
  """A ``ShortestPathBatch`` for the given (start, end) station pairs."""
  from experiments.graphs import tasks  # pylint: disable=g-import-not-at-top
  g = underground.graph
  dist = generate.distances(g)
  return tasks.shortest_path_batch(
      rng, [(g, dist, a, b) for a, b in pairs], beta=beta)


if __name__ == "__main__":
  print_summary()
