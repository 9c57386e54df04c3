"""Where an inference network's read heads look while it answers.

A query (start, relation, _) names a walk: from the start node, follow the
relation's edge labels one by one. A network that walks reads the walk's
first edge, then the second, ... ; one that takes a shortcut (the last
edge found by its label alone) reads the last edge only. This module
measures which, from the read and write weightings of a recorded episode
(``experiments.models.recording_dnc``):

* the slot of each description triple is where the network wrote it (the
  largest entry of that step's write weighting);
* a query's planning steps are the steps between its query step and its
  answer step; its answer step is the first target step of the query.

All functions are plain NumPy on one batch.
"""

from __future__ import annotations

from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from experiments.graphs import encoding

Triple = Tuple[int, int, int]


def description_triples(inputs: np.ndarray, b: int) -> List[Triple]:
  """Episode ``b``'s graph as (source, edge label, destination) triples,
  read back from its description (the non-blank triples before the first
  phase pulse) in ``inputs [T, B, 92]``."""
  x = np.asarray(inputs)[:, b]
  pulses = np.nonzero(x[:, encoding.TRIPLE_SIZE] > 0)[0]
  return [tuple(encoding.decode_triple(x[t]))
          for t in range(pulses[0] if len(pulses) else len(x))
          if np.any(x[t, :encoding.TRIPLE_SIZE])]


def query_steps(mask_column: np.ndarray) -> List[np.ndarray]:
  """One episode's answer steps (``mask [T]`` > 0), one array per query
  (a query's answers are contiguous, queries are not)."""
  steps = np.nonzero(np.asarray(mask_column) > 0)[0]
  if not len(steps):
    return []
  return np.split(steps, np.nonzero(np.diff(steps) > 1)[0] + 1)


def walk_edges(description: Sequence[Triple], start: int,
               labels: Sequence[int]) -> Optional[List[int]]:
  """Indices into ``description`` of the edges the walk takes, in order.

  Returns ``None`` where the walk breaks (no edge with the next label
  leaves the current node). Edge labels are unique among a node's
  out-edges, so the walk is unique.
  """
  node, path = start, []
  for label in labels:
    step = [i for i, (source, edge, _) in enumerate(description)
            if source == node and edge == label]
    if not step:
      return None
    path.append(step[0])
    node = description[step[0]][2]
  return path


def query_reads(read_weights: np.ndarray, write_weights: np.ndarray,
                inputs: np.ndarray, targets: np.ndarray, mask: np.ndarray,
                relations: Mapping[int, Sequence[int]]
                ) -> List[Dict[str, object]]:
  """Per query of a batch, how the read heads weigh the walk's edges.

  Args:
    read_weights: ``[T, B, R, N]`` after every step.
    write_weights: ``[T, B, N]`` (one write head) after every step.
    inputs: ``[T, B, 92]``; targets ``[T, B, 90]``; mask ``[T, B]``.
    relations: ``{relation label: edge labels}``.
  Returns:
    One dict per query whose walk is found, episodes in order:
    ``planning_on_graph`` (the busiest head's total weight on the
    description slots, averaged over the planning steps),
    ``answer_on_graph`` (the same at the answer step), ``answer_on_edge``
    (``[L]``: the most any head puts on each walk edge at the answer step,
    each edge's own head), ``peak_on_edge`` (``[L]``: the most any head
    puts on each walk edge at any planning or answer step). Triples that
    share a slot count once in the totals on the graph.
  """
  read_weights = np.asarray(read_weights)
  write_weights = np.asarray(write_weights)
  inputs = np.asarray(inputs)
  out = []
  for b in range(inputs.shape[1]):
    pulses = np.nonzero(inputs[:, b, encoding.TRIPLE_SIZE] > 0)[0]
    description = description_triples(inputs, b)
    slots = write_weights[:pulses[0], b].argmax(-1)
    graph_slots = np.unique(slots)
    for answer_steps in query_steps(np.asarray(mask)[:, b]):
      answer = int(answer_steps[0])
      start, relation, _ = encoding.decode_triple(targets[answer, b])
      path = walk_edges(description, start, relations[relation])
      if path is None:
        continue
      # The pulses before the answer step end with the query step and the
      # first planning step; the query step's own reads are left out.
      query = int(pulses[pulses < answer][-2])
      plan = read_weights[query + 1:answer, b]          # [P, R, N]
      at_answer = read_weights[answer, b]               # [R, N]
      window = read_weights[query + 1:answer + 1, b]    # [P + 1, R, N]
      edge_slots = slots[path]
      out.append({
          "planning_on_graph": float(
              plan[..., graph_slots].sum(-1).max(-1).mean())
                               if len(plan) else 0.0,
          "answer_on_graph": float(at_answer[:, graph_slots].sum(-1).max()),
          "answer_on_edge": at_answer[:, edge_slots].max(0),
          "peak_on_edge": window[..., edge_slots].max((0, 1)),
      })
  return out


def summary_rows(queries: Sequence[Dict[str, object]], where: str,
                 task: str = "inference") -> List[Dict[str, object]]:
  """Table rows (mean weights, in %) over :func:`query_reads`'s queries."""
  if not queries:
    return []

  def row(what, values):
    return {"test": "reads", "task": task, "what": f"{where}: {what}",
            "ours": round(100 * float(np.mean(values)), 1), "paper": "-",
            "count": len(values)}

  rows = [row("planning steps, the busiest head's weight on the graph's "
              "triples", [q["planning_on_graph"] for q in queries]),
          row("answer step, the busiest head's weight on the graph's "
              "triples", [q["answer_on_graph"] for q in queries])]
  longest = max(len(q["answer_on_edge"]) for q in queries)
  for j in range(longest):
    having = [q for q in queries if len(q["answer_on_edge"]) > j]
    rows.append(row(f"answer step, the most any head puts on edge "
                    f"{j + 1} of the walk",
                    [q["answer_on_edge"][j] for q in having]))
    rows.append(row(f"planning and answer steps, the most any head puts on "
                    f"edge {j + 1} of the walk",
                    [q["peak_on_edge"][j] for q in having]))
  return rows
