"""Closed-loop shortest path: DAgger-style feedback (PROTOCOL §1.5).

At each answer step the network's output is renormalised over the triples
leaving the current node plus the termination pattern (the "actions"); its
choice is the most probable action (argmax, not a sample). A coin decides
the move: with probability beta the target (the first move of the
tie-broken shortest path from the current node, or termination once at the
destination) is taken, otherwise the network's choice. The taken triple is
the next step's input. Targets are recomputed from wherever the walk is.

The coins are drawn by ``ShortestPath.sample`` from its ``rng``: one
independent Bernoulli(beta) per episode *and* per step (``batch.teacher
[T, B]``), so a batch, coins included, is a pure function of the seed.
Evaluation batches use ``beta = 0`` (network-only, modal moves).

:func:`feedback_step` is the pure NumPy statement of one step;
:class:`FeedbackCore` is the jit-able ``hk.RNNCore`` doing the same inside
an unroll, wrapping any core (DNC, LSTM). A move whose target does not exist
(the destination unreachable from the current node: graphs need not be
strongly connected) ends the episode as failed, with mask 0 from then on.
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Optional, Tuple

import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np

from experiments.graphs import encoding
from experiments.graphs import generate
from experiments.graphs.encoding import TERMINATION


class FeedbackStep(NamedTuple):
  """One step's result (NumPy).

  Attributes:
    target: the target triple (labels) at the current node.
    target_slot: its action index (``len(out-edges)`` = terminate).
    taken: the taken triple, the next step's input.
    next_node: node index after the move.
    terminated: whether the taken action was termination.
  """

  target: tuple
  target_slot: int
  taken: tuple
  next_node: int
  terminated: bool


def actions(graph: generate.Graph, node: int) -> np.ndarray:
  """``[k + 1, 3]`` label triples: out-edges of ``node`` by label, then
  ``TERMINATION``."""
  out = graph.out_edges(node)
  labels = graph.node_labels
  rows = [(labels[s], l, labels[d]) for s, l, d in out]
  return np.asarray(rows + [TERMINATION], np.int64)


def network_choice(logits: np.ndarray, graph: generate.Graph,
                   node: int) -> int:
  """Argmax of the output renormalised over ``actions(graph, node)``.

  Args:
    logits: ``[90]``.
  """
  z = np.asarray(logits, np.float64).reshape(9, 10)
  log_probs = z - np.log(np.exp(z - z.max(-1, keepdims=True)).sum(
      -1, keepdims=True)) - z.max(-1, keepdims=True)
  options = actions(graph, node)
  digits = np.stack([options // 100, (options // 10) % 10, options % 10],
                    -1).reshape(len(options), 9)
  scores = log_probs[np.arange(9), digits].sum(-1)
  return int(np.argmax(scores))


def feedback_step(graph: generate.Graph, current: int, choice: int,
                  destination: int, teacher: bool,
                  table: Optional[np.ndarray] = None) -> FeedbackStep:
  """One DAgger step: the target, and the move the coin picks.

  Args:
    graph: the episode's graph.
    current: current node index.
    choice: the network's action index into ``actions(graph, current)``.
    destination: destination node index.
    teacher: the step's coin (True with probability beta): take the target
      instead of ``choice``.
    table: ``generate.next_edges(graph)`` (computed if omitted).

  Raises:
    ValueError: if ``destination`` is unreachable from ``current``.
  """
  if table is None:
    table = generate.next_edges(graph)
  options = actions(graph, current)
  terminate = len(options) - 1
  if current == destination:
    target_slot = terminate
  else:
    row = table[current, destination]
    if row < 0:
      raise ValueError(f"node {destination} unreachable from {current}")
    out = graph.out_edges(current)
    target_slot = int(np.nonzero(out[:, 1] == graph.edges[row, 1])[0][0])
  if not 0 <= choice <= terminate:
    raise ValueError(f"choice {choice} out of range [0, {terminate}]")
  slot = target_slot if teacher else choice
  taken = tuple(int(x) for x in options[slot])
  if slot == terminate:
    next_node = current
  else:
    next_node = int(graph.out_edges(current)[slot, 2])
  return FeedbackStep(tuple(int(x) for x in options[target_slot]),
                      target_slot, taken, next_node, slot == terminate)


class ClosedLoopGraph(NamedTuple):
  """The per-episode arrays of a ``ShortestPathBatch`` (see there)."""

  node_labels: jax.Array
  out_label: jax.Array
  out_dst: jax.Array
  next_slot: jax.Array
  start: jax.Array
  dest: jax.Array

  @classmethod
  def from_batch(cls, batch) -> "ClosedLoopGraph":
    return cls(*(jnp.asarray(getattr(batch, f)) for f in cls._fields))


class FeedbackInputs(NamedTuple):
  """Per-step inputs: ``x [B, 92]``, ``answer [B]``, ``teacher [B]``."""

  x: jax.Array
  answer: jax.Array
  teacher: jax.Array


class FeedbackState(NamedTuple):
  inner: object
  node: jax.Array   # [B] int32
  done: jax.Array   # [B] bool
  fed: jax.Array    # [B, 90] the triple to feed at the next answer step


class FeedbackOutput(NamedTuple):
  """Per-step outputs.

  Attributes:
    logits: ``[B, 90]`` the wrapped core's outputs.
    target: ``[B, 90]`` one-hot target triple.
    mask: ``[B]`` 1 where the step is trained and scored.
    choice: ``[B]`` int action taken (``D`` = terminate), -1 if inactive.
    log_policy: ``[B, D + 1]`` renormalised log-probabilities of actions.
  """

  logits: jax.Array
  target: jax.Array
  mask: jax.Array
  choice: jax.Array
  log_policy: jax.Array


def initial_feedback_state(graph: ClosedLoopGraph, inner) -> FeedbackState:
  """The walk at the start nodes, nothing fed yet, around ``inner``."""
  b = graph.start.shape[0]
  return FeedbackState(inner, graph.start.astype(jnp.int32),
                       jnp.zeros((b,), bool),
                       jnp.zeros((b, encoding.TRIPLE_SIZE), jnp.float32))


def core_input(inputs: FeedbackInputs, state: FeedbackState) -> jax.Array:
  """``[B, 92]``: the batch's input, its triple replaced on answer steps by
  the triple taken on the previous step (blank at the first)."""
  answer = inputs.answer > 0
  return jnp.where(answer[:, None],
                   jnp.concatenate([state.fed, inputs.x[:, 90:]], -1),
                   inputs.x)


def feedback_transition(graph: ClosedLoopGraph, inputs: FeedbackInputs,
                        state: FeedbackState, logits: jax.Array, inner
                        ) -> Tuple[FeedbackOutput, FeedbackState]:
  """Given the core's ``logits [B, 90]`` for ``core_input``: the target,
  the move the coin picks, the next walk state (jit-able)."""
  g = graph
  answer = inputs.answer > 0
  batch = logits.shape[0]
  b = jnp.arange(batch)
  cur = state.node
  labels = g.out_label[b, cur]                       # [B, D]
  dsts = g.out_dst[b, cur]                           # [B, D]
  valid = labels >= 0
  d = labels.shape[-1]
  source = jnp.broadcast_to(g.node_labels[b, cur][:, None], labels.shape)
  dest_labels = g.node_labels[b[:, None], jnp.maximum(dsts, 0)]
  cand = jnp.stack([source, jnp.maximum(labels, 0), dest_labels], -1)
  term = jnp.broadcast_to(jnp.asarray(TERMINATION, cand.dtype),
                          (batch, 1, 3))
  cand = jnp.concatenate([jnp.maximum(cand, 0), term], 1)  # [B, D+1, 3]
  valid = jnp.concatenate([valid, jnp.ones((batch, 1), bool)], 1)
  log_probs = encoding.digit_log_probs(logits)       # [B, 9, 10]
  digits = encoding.triples_to_digits(cand)          # [B, D+1, 9]
  scores = jnp.take_along_axis(
      jnp.broadcast_to(log_probs[:, None], digits.shape + (10,)),
      digits[..., None], -1)[..., 0].sum(-1)
  scores = jnp.where(valid, scores, -jnp.inf)
  log_policy = jax.nn.log_softmax(scores, -1)
  net = jnp.argmax(scores, -1)
  at_dest = cur == g.dest
  target_slot = jnp.where(at_dest, d, g.next_slot[b, cur, g.dest])
  reachable = target_slot >= 0
  target_slot = jnp.where(reachable, target_slot, d)
  active = answer & ~state.done & reachable
  choice = jnp.where(inputs.teacher, target_slot, net)
  terminate = choice == d
  taken = cand[b, choice]
  moved = dsts[b, jnp.minimum(choice, d - 1)]
  node = jnp.where(active & ~terminate, moved, cur)
  done = state.done | (answer & (terminate | ~reachable))
  # Blank input after termination, as in the teacher-forced batch.
  fed = jnp.where((active & ~terminate)[:, None],
                  encoding.encode_triples_jax(taken), 0.0)
  output = FeedbackOutput(
      logits, encoding.encode_triples_jax(cand[b, target_slot]),
      active.astype(jnp.float32), jnp.where(active, choice, -1), log_policy)
  return output, FeedbackState(inner, node.astype(jnp.int32), done,
                               fed.astype(jnp.float32))


class FeedbackCore(hk.RNNCore):
  """Wraps ``core`` so that it runs shortest path closed loop.

  Args:
    core: any ``hk.RNNCore`` taking ``[B, 92]`` and giving ``[B, 90]``.
    graph: the batch's :class:`ClosedLoopGraph`.
  """

  def __init__(self, core: hk.RNNCore, graph: ClosedLoopGraph,
               name: Optional[str] = None):
    super().__init__(name=name)
    self._core = core
    self._graph = graph

  def initial_state(self, batch_size: Optional[int]) -> FeedbackState:
    return initial_feedback_state(self._graph,
                                  self._core.initial_state(batch_size))

  def __call__(self, inputs: FeedbackInputs, state: FeedbackState):
    logits, inner = self._core(core_input(inputs, state), state.inner)
    return feedback_transition(self._graph, inputs, state, logits, inner)


def functional_rollout(step: Callable, params, inner_state, batch
                       ) -> FeedbackOutput:
  """Closed loop with a functional core, in one ``jax.lax.scan``.

  For the trainer's model protocol: ``step(params, x [B, 92], state) ->
  (y [B, 90], state)``, ``inner_state`` its initial state.

  Returns:
    Time-major :class:`FeedbackOutput`.
  """
  graph = ClosedLoopGraph.from_batch(batch)
  inputs = FeedbackInputs(jnp.asarray(batch.inputs),
                          jnp.asarray(batch.answer),
                          jnp.asarray(batch.teacher))

  def body(state, x):
    logits, inner = step(params, core_input(x, state), state.inner)
    return feedback_transition(graph, x, state, logits, inner)[::-1]

  _, outputs = jax.lax.scan(body, initial_feedback_state(graph, inner_state),
                            inputs)
  return outputs


def closed_loop_unroll(core: hk.RNNCore, batch) -> FeedbackOutput:
  """Unrolls ``FeedbackCore(core)`` over a ``ShortestPathBatch``.

  Call inside ``hk.transform``. Returns time-major ``FeedbackOutput``.
  """
  wrapped = FeedbackCore(core, ClosedLoopGraph.from_batch(batch))
  inputs = FeedbackInputs(jnp.asarray(batch.inputs),
                          jnp.asarray(batch.answer),
                          jnp.asarray(batch.teacher))
  state = wrapped.initial_state(batch.inputs.shape[1])
  outputs, _ = hk.dynamic_unroll(wrapped, inputs, state)
  return outputs


def closed_loop_loss(outputs: FeedbackOutput) -> jax.Array:
  """Nine-digit loss on the closed-loop targets, mean over the batch."""
  return encoding.digit_loss(outputs.logits, outputs.target, outputs.mask)
