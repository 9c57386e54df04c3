"""Closed-loop shortest path: DAgger feedback, NumPy vs the jit-able core."""

import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.graphs import dagger
from experiments.graphs import encoding
from experiments.graphs import generate
from experiments.graphs import tasks
from experiments.graphs.tasks import Lesson


class _Table(hk.RNNCore):
  """Emits ``logits[t]`` at step t (a 'network' with fixed random outputs)."""

  def __init__(self, logits):
    super().__init__()
    self._logits = jnp.asarray(logits)

  def initial_state(self, batch_size):
    return jnp.zeros((), jnp.int32)

  def __call__(self, x, t):
    return self._logits[t], t + 1


class _Echo(hk.RNNCore):
  """Emits its input triple: shows what the wrapped core was fed."""

  def initial_state(self, batch_size):
    return jnp.zeros(())

  def __call__(self, x, state):
    return x[:, :90], state


LESSON = Lesson((6, 12), (1, 3), (2, 4))
TASK = tasks.ShortestPath(LESSON)
BATCH = 16


def _problems(rng, count):
  return [TASK.problem(rng) for _ in range(count)]


def _batch(rng, problems, beta):
  """Fixed padding, so every test reuses one compiled unroll."""
  return tasks.shortest_path_batch(rng, problems, TASK.max_time, 12, 3,
                                   TASK.answer_steps, beta)


def _table_unroll(batch, logits):
  return dagger.closed_loop_unroll(_Table(logits), batch)


_TABLE = jax.jit(hk.without_apply_rng(hk.transform(_table_unroll)).apply)
_ECHO = jax.jit(hk.without_apply_rng(hk.transform(
    lambda b: dagger.closed_loop_unroll(_Echo(), b))).apply)


def bfs_unreachable(graph, start, end):
  seen, frontier = {start}, [start]
  while frontier:
    frontier = [int(d) for s, _, d in graph.edges
                if s in frontier and int(d) not in seen]
    seen.update(frontier)
  return end not in seen


def _unroll(core_fn, batch, logits=None):
  if core_fn is _Echo:
    out = _ECHO(None, batch)
  else:
    out = _TABLE(None, batch, logits)
  return jax.tree.map(np.asarray, out)


def test_feedback_step_takes_target_or_network_choice():
  rng = np.random.default_rng(0)
  graph, dist, start, end = _problems(rng, 1)[0]
  options = dagger.actions(graph, start)
  path = generate.shortest_path(graph, start, end)
  wanted = (graph.node_labels[start], path[0, 1], graph.node_labels[path[0, 2]])
  wrong = next(i for i, o in enumerate(options[:-1]) if tuple(o) != wanted)
  for teacher in (True, False):
    step = dagger.feedback_step(graph, start, wrong, end, teacher)
    assert step.target == wanted
    assert tuple(options[step.target_slot]) == wanted
    assert step.taken == (wanted if teacher else tuple(options[wrong]))
    taken_dest = step.taken[2]
    assert graph.node_labels[step.next_node] == taken_dest
    assert not step.terminated
  at_end = dagger.feedback_step(graph, end, 0, end, True)
  assert at_end.target == encoding.TERMINATION and at_end.terminated
  with pytest.raises(ValueError, match="out of range"):
    dagger.feedback_step(graph, start, len(options), end, False)


def test_feedback_step_unreachable_destination_raises():
  graph = generate.Graph(np.array([5, 6, 7]),
                         np.array([[0, 6, 1], [1, 5, 0], [2, 5, 0]]))
  with pytest.raises(ValueError, match="unreachable"):
    dagger.feedback_step(graph, 0, 0, 2, True)


def test_core_matches_numpy_feedback_steps():
  rng = np.random.default_rng(1)
  problems = _problems(rng, BATCH)
  batch = _batch(rng, problems, 0.5)
  t, b = batch.inputs.shape[:2]
  logits = rng.normal(size=(t, b, 90)).astype(np.float32) * 3
  out = _unroll(_Table, batch, logits)
  for e, (graph, dist, start, end) in enumerate(problems):
    table = generate.next_edges(graph, dist)
    node, done = start, False
    for step in np.nonzero(batch.answer[:, e])[0]:
      if done:
        assert out.mask[step, e] == 0 and out.choice[step, e] == -1
        continue
      if bfs_unreachable(graph, node, end):  # The walk failed: stop.
        assert out.mask[step, e] == 0 and out.choice[step, e] == -1
        done = True
        continue
      choice = dagger.network_choice(logits[step, e], graph, node)
      result = dagger.feedback_step(graph, node, choice, end,
                                    bool(batch.teacher[step, e]), table)
      assert out.mask[step, e] == 1
      assert encoding.decode_triple(out.target[step, e]) == result.target
      slot = result.target_slot if batch.teacher[step, e] else choice
      if slot == len(dagger.actions(graph, node)) - 1:  # terminate
        slot = batch.out_label.shape[-1]  # the core's index for it: D
      assert out.choice[step, e] == slot
      node, done = result.next_node, result.terminated
    assert np.all(out.mask[batch.answer[:, e] == 0, e] == 0)


def test_network_choice_is_used_with_probability_one_minus_beta():
  rng = np.random.default_rng(2)
  followed, teacher = [], []
  for _ in range(4):
    problems = _problems(rng, BATCH)
    batch = _batch(rng, problems, 0.8)
    t, b = batch.inputs.shape[:2]
    logits = rng.normal(size=(t, b, 90)).astype(np.float32) * 3
    net = _unroll(_Table, batch._replace(
        teacher=np.zeros_like(batch.teacher)), logits)
    mixed = _unroll(_Table, batch, logits)
    # First answer step: same state either way; see who decided the move.
    first, cols = batch.answer.argmax(0), np.arange(b)
    target_slot = np.asarray([
        dagger.feedback_step(g, s, 0, e, True).target_slot
        for g, _, s, e in problems])
    differs = net.choice[first, cols] != target_slot
    followed.append((mixed.choice[first, cols] ==
                     net.choice[first, cols])[differs])
    teacher.append(batch.teacher[first, cols][differs])
  followed, teacher = np.concatenate(followed), np.concatenate(teacher)
  assert np.all(followed == ~teacher)
  assert len(followed) > 20


def test_coins_are_seeded_bernoulli_beta():
  task = tasks.ShortestPath(Lesson((5, 10), (1, 2), (2, 2)), beta=0.8)
  a = task.sample(np.random.default_rng(3), 64)
  b = task.sample(np.random.default_rng(3), 64)
  c = task.sample(np.random.default_rng(4), 64)
  np.testing.assert_array_equal(a.teacher, b.teacher)
  assert not np.array_equal(a.teacher, c.teacher)
  coins = a.teacher[a.answer > 0]
  # Binomial(n, 0.8): 5 standard deviations.
  assert abs(coins.mean() - 0.8) < 5 * np.sqrt(0.16 / coins.size)
  assert not task.sample(np.random.default_rng(3), 8, beta=0.0).teacher.any()


def test_teacher_forced_closed_loop_reproduces_the_static_batch():
  rng = np.random.default_rng(5)
  task = TASK
  batch = _batch(rng, _problems(rng, BATCH), 1.0)
  out = _unroll(_Echo, batch)
  np.testing.assert_array_equal(out.logits, batch.inputs[..., :90])
  np.testing.assert_array_equal(out.mask, batch.mask)
  np.testing.assert_array_equal(out.target * out.mask[..., None],
                                batch.targets)
  assert task.score_paths(batch, out.choice).all()
  loss = dagger.closed_loop_loss(jax.tree.map(jnp.asarray, out))
  assert np.isfinite(float(loss))


def test_score_paths_rejects_longer_and_unterminated_paths():
  rng = np.random.default_rng(6)
  task = TASK
  batch = _batch(rng, _problems(rng, BATCH), 1.0)
  out = _unroll(_Echo, batch)
  good = out.choice.copy()
  assert task.score_paths(batch, good).all()
  never = np.where(batch.answer > 0, 0, good)  # never terminates... or loops
  d = batch.out_label.shape[-1]
  assert not any(task.score_paths(batch, never)[b]
                 for b in range(BATCH) if (never[:, b] != d).all())
  early = np.where(batch.answer > 0, d, good)  # terminates at the start
  assert not task.score_paths(batch, early).any()


def test_feedback_core_wraps_a_dnc():
  from dnc_jax import DNC, DNCConfig
  config = DNCConfig(output_size=90, memory_size=8, word_size=4,
                     num_reads=1, hidden_size=8, memory_backend="xla")
  rng = np.random.default_rng(8)
  batch = _batch(rng, _problems(rng, BATCH), 0.8)
  f = hk.without_apply_rng(hk.transform(
      lambda b: dagger.closed_loop_loss(
          dagger.closed_loop_unroll(DNC(config), b))))
  # One compilation (init and apply together) keeps the test CI-sized.
  loss = jax.jit(lambda key, b: f.apply(f.init(key, b), b))(
      jax.random.PRNGKey(0), batch)
  assert np.isfinite(float(loss)) and float(loss) > 0
