"""An invented family tree for the inference test (PROTOCOL §1.7, Fig. 2c).

Four generations: two founding couples, their children, grandchildren and
great-grandchildren, with spouses who marry in (those have no parents in the
tree). Every couple has at most one son and one daughter and everyone has at
most one spouse, so each of the eight single-edge relations below is unique
among a person's out-edges and following a relation is deterministic.

Single-edge labels (the inference task's 0-9 edge labels): 0 mother,
1 father, 2 son, 3 daughter, 4 brother, 5 sister, 6 husband, 7 wife
(8 and 9 unused). Node labels: a person's index in ``PEOPLE`` (0-29).

Four-step relations are the length-4 entries of the fixed relation table
(``generate.relation_table()``, labels 210-309) that can be followed from
some person; the table's length-4 block starts with the named kinship
relations of ``generate.RESERVED_RELATIONS`` (``NAMED``), e.g. Freya's
maternal great-uncle Fergus: mother, mother, father, son.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from experiments.graphs import generate

MOTHER, FATHER, SON, DAUGHTER, BROTHER, SISTER, HUSBAND, WIFE = range(8)
EDGE_NAMES = {MOTHER: "mother", FATHER: "father", SON: "son",
              DAUGHTER: "daughter", BROTHER: "brother", SISTER: "sister",
              HUSBAND: "husband", WIFE: "wife"}

# (name, gender, father, mother); parents None for founders and in-laws.
PEOPLE: Tuple[Tuple[str, str, Optional[str], Optional[str]], ...] = (
    ("Angus", "M", None, None), ("Brenda", "F", None, None),
    ("Duncan", "M", None, None), ("Elspeth", "F", None, None),
    ("Fergus", "M", "Angus", "Brenda"), ("Gwen", "F", "Angus", "Brenda"),
    ("Hamish", "M", "Duncan", "Elspeth"), ("Isla", "F", "Duncan", "Elspeth"),
    ("Lorna", "F", None, None), ("Oscar", "M", None, None),
    ("Ian", "M", "Hamish", "Gwen"), ("Kirsty", "F", "Hamish", "Gwen"),
    ("Magnus", "M", "Fergus", "Lorna"), ("Nessa", "F", "Fergus", "Lorna"),
    ("Peter", "M", "Oscar", "Isla"), ("Rhona", "F", "Oscar", "Isla"),
    ("Stuart", "M", None, None), ("Una", "F", None, None),
    ("Xander", "M", None, None), ("Morag", "F", None, None),
    ("Tom", "M", "Stuart", "Kirsty"), ("Freya", "F", "Stuart", "Kirsty"),
    ("Vince", "M", "Ian", "Una"), ("Wendy", "F", "Ian", "Una"),
    ("Zach", "M", "Xander", "Nessa"), ("Yvonne", "F", "Xander", "Nessa"),
    ("Callum", "M", "Magnus", "Rhona"), ("Ailsa", "F", "Magnus", "Rhona"),
    ("Robbie", "M", "Peter", "Morag"), ("Skye", "F", "Peter", "Morag"),
)
MARRIAGES = (("Angus", "Brenda"), ("Duncan", "Elspeth"), ("Hamish", "Gwen"),
             ("Fergus", "Lorna"), ("Oscar", "Isla"), ("Stuart", "Kirsty"),
             ("Ian", "Una"), ("Xander", "Nessa"), ("Magnus", "Rhona"),
             ("Peter", "Morag"))

NAMED = {
    generate.RESERVED_RELATIONS[0]: "maternal great-uncle",
    generate.RESERVED_RELATIONS[1]: "maternal great-aunt",
    generate.RESERVED_RELATIONS[2]: "paternal great-uncle",
    generate.RESERVED_RELATIONS[3]: "paternal great-aunt",
    generate.RESERVED_RELATIONS[4]: "maternal first cousin once removed",
    generate.RESERVED_RELATIONS[5]: "maternal cousin's husband",
    generate.RESERVED_RELATIONS[6]: "paternal first cousin's son",
    generate.RESERVED_RELATIONS[7]: "husband's maternal great-aunt",
}


def build() -> generate.Graph:
  """The family tree as a ``Graph`` (labels unique per person, validated)."""
  names = [p[0] for p in PEOPLE]
  index = {n: i for i, n in enumerate(names)}
  gender = {p[0]: p[1] for p in PEOPLE}
  edges = set()
  children: Dict[Tuple[str, str], List[str]] = {}
  for name, _, father, mother in PEOPLE:
    if father is None:
      continue
    children.setdefault((father, mother), []).append(name)
    edges.add((name, FATHER, father))
    edges.add((name, MOTHER, mother))
    for parent in (father, mother):
      edges.add((parent, SON if gender[name] == "M" else DAUGHTER, name))
  for kids in children.values():
    for a in kids:
      for b in kids:
        if a != b:
          edges.add((a, BROTHER if gender[b] == "M" else SISTER, b))
  for husband, wife in MARRIAGES:
    edges.add((husband, WIFE, wife))
    edges.add((wife, HUSBAND, husband))
  rows = sorted((index[a], label, index[b]) for a, label, b in edges)
  graph = generate.Graph(np.arange(len(names), dtype=np.int64),
                         np.asarray(rows, np.int64), None, tuple(names),
                         dict(EDGE_NAMES))
  graph.validate()
  return graph


def relation_queries(graph: Optional[generate.Graph] = None,
                     length: int = 4,
                     relations: Optional[dict] = None
                     ) -> List[Tuple[int, int, int]]:
  """Every (start, relation label, end) of the given relation length that
  can be followed in the tree."""
  graph = graph or build()
  relations = relations or generate.relation_table()
  chosen = [(l, s) for l, s in sorted(relations.items()) if len(s) == length]
  if not chosen:
    raise ValueError(f"no relations of length {length}")
  ends = generate.follow_all(graph, np.asarray([s for _, s in chosen]))
  return [(int(a), chosen[r][0], int(ends[a, r]))
          for a, r in zip(*np.nonzero(ends >= 0))]


def describe(query: Tuple[int, int, int],
             graph: Optional[generate.Graph] = None) -> str:
  """E.g. "Fergus is Freya's maternal great-uncle (mother mother ...)"."""
  graph = graph or build()
  start, relation, end = query
  sequence = generate.relation_table()[relation]
  words = " ".join(EDGE_NAMES.get(x, str(x)) for x in sequence)
  name = NAMED.get(tuple(sequence), f"relation {relation}")
  return (f"{graph.names[end]} is {graph.names[start]}'s {name} "
          f"({words})")


def inference_batch(rng: np.random.Generator,
                    queries: Sequence[Tuple[int, int, int]],
                    per_episode: int = 3):
  """A ``GraphBatch`` asking ``queries``, ``per_episode`` per episode (3,
  as in training; the last episode may have fewer)."""
  from experiments.graphs import tasks  # pylint: disable=g-import-not-at-top
  graph = build()
  episodes = [tasks.inference_episode(rng, graph,
                                      queries[i:i + per_episode])
              for i in range(0, len(queries), per_episode)]
  return tasks.batch_of(episodes)
