"""Fig. 4d's decoding of the first actions: the logistic regression against
an independent optimiser and finite differences, the goal features on a
hand-made episode, the targets, splits, baseline and percentiles by hand,
and one tiny run of a fresh DNC."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize
import scipy.special

from experiments.shrdlu import decode
from experiments.tasks import shrdlu

TINY = {"kind": "dnc", "hidden_size": 16, "memory_size": 4, "word_size": 3,
        "num_reads": 2, "controller_grad_clip": 10.0}
MINI = [[[2, 2], [3, 3], [1, 1], [1, 1]]]


def _blobs(rng, n, dim, classes, spread):
  centres = rng.normal(size=(len(classes), dim)) * 3
  which = rng.integers(0, len(classes), n)
  x = centres[which] + spread * rng.normal(size=(n, dim))
  return x, np.asarray(classes)[which]


def test_logistic_gradient_vanishes_at_the_fit():
  rng = np.random.default_rng(0)
  # Overlapping classes with labels 0, 2, 5: the fit covers those three.
  x, y = _blobs(rng, 120, 4, [0, 2, 5], spread=3.0)
  model = decode.fit_logistic(x, y, l2=1.0)
  np.testing.assert_array_equal(model.classes, [0, 2, 5])
  index = np.searchsorted(model.classes, y)
  theta = np.concatenate([model.weights, model.bias[None]], 0)

  def grad(l2, eps=1e-5):
    def j(flat):
      t = flat.reshape(theta.shape)
      return decode.objective(t[:-1], t[-1], x, index, l2)
    flat = theta.reshape(-1)
    return np.asarray([(j(flat + eps * e) - j(flat - eps * e)) / (2 * eps)
                       for e in np.eye(len(flat))])

  assert np.max(np.abs(grad(1.0))) < 1e-4
  # The check can fail: without the penalty the same point is no optimum.
  assert np.max(np.abs(grad(0.0))) > 1e-2


def test_logistic_matches_an_independent_optimiser():
  rng = np.random.default_rng(1)
  x, y = _blobs(rng, 200, 5, [1, 3, 4, 6], spread=2.5)
  l2 = 3.0
  model = decode.fit_logistic(x, y, l2=l2)
  index = np.searchsorted(model.classes, y)
  dim, k = x.shape[1], 4

  def nll(flat):  # Written apart from the module: logsumexp by scipy.
    w, b = flat[:dim * k].reshape(dim, k), flat[dim * k:]
    z = x @ w + b
    return (np.sum(scipy.special.logsumexp(z, axis=1)
                   - z[np.arange(len(y)), index])
            + 0.5 * l2 * np.sum(w ** 2))

  best = scipy.optimize.minimize(nll, np.zeros(dim * k + k),
                                 method="BFGS", options={"gtol": 1e-8})
  ours = nll(np.concatenate([model.weights.reshape(-1), model.bias]))
  assert ours <= best.fun + 1e-6
  # The optimum's W is unique (strictly convex in W); b up to a constant.
  np.testing.assert_allclose(model.weights,
                             best.x[:dim * k].reshape(dim, k), atol=1e-3)


def test_logistic_separates_separable_data():
  rng = np.random.default_rng(2)
  x, y = _blobs(rng, 400, 6, [0, 1, 2, 3, 4, 5, 6], spread=0.2)
  model = decode.fit_logistic(x[:300], y[:300])
  assert np.mean(model.predict(x[300:]) == y[300:]) > 0.97
  # One class only: it is always predicted.
  single = decode.fit_logistic(x[:5], np.full(5, 4))
  np.testing.assert_array_equal(single.predict(x), np.full(len(x), 4))
  with pytest.raises(ValueError, match="l2"):
    decode.fit_logistic(x, y, l2=0.0)


def test_goal_features_by_hand():
  # Two episodes, T = 4 steps, N = 3 locations, W = 2, R = 2 read heads.
  steps, slots = 4, 3
  memory = np.zeros((2, steps, slots, 2))
  for t in range(steps):
    for n in range(slots):
      memory[:, t, n] = [100 + 10 * t + n, t * n]
  write = np.zeros((2, steps, slots))
  read = np.zeros((2, steps, 2, slots))
  # Episode 0, query at step 2. Location 0 is read by head 0, location 1
  # by head 1 only (head 0 under the threshold), location 2 by both.
  read[0, 2, 0] = [0.5, 0.005, 0.495]
  read[0, 2, 1] = [0.0, 0.02, 0.98]
  read[0, 3] = 0.3  # After the query: ignored.
  write[0, 0] = [0.9, 0.0, 0.1]
  write[0, 1] = [0.005, 0.5, 0.02]  # Location 0's 0.005 is no write.
  write[0, 2] = [0.9, 0.9, 0.9]     # The query step: not "before".
  # Locations 0, 1, 2 last written at steps 0, 1, 1.
  expected0 = (memory[0, 0, 0] + memory[0, 1, 1] + memory[0, 1, 2]) / 3
  # Episode 1, query at step 1: only location 1 is read, and it was never
  # written before the query; location 0 was, but is not read.
  read[1, 1, 0] = [0.001, 0.9, 0.009]
  write[1, 0] = [0.5, 0.0, 0.5]
  features, locations = decode.goal_features(memory, write, read,
                                             np.asarray([2, 1]))
  np.testing.assert_allclose(features[0], expected0)
  np.testing.assert_array_equal(features[1], [0.0, 0.0])
  np.testing.assert_array_equal(locations, [3, 0])


def test_shown_goal_and_next_shown_by_hand():
  # Goals of 2, 0 (not shown) and 1 constraints: steps 0-1 show goal 0,
  # step 2 goal 2, step 3 on is the action phase.
  sizes = np.asarray([[2, 0, 1], [1, 1, 0]])
  np.testing.assert_array_equal(decode.shown_goal(sizes, 5),
                                [[0, 0, 2, -1, -1], [0, 1, -1, -1, -1]])
  np.testing.assert_array_equal(
      decode.next_shown(sizes, np.asarray([0, 1])), [2, 0])
  np.testing.assert_array_equal(
      decode.next_shown(np.asarray([[0, 3, 0]]), np.asarray([1])), [1])


def test_read_focus_by_hand():
  # One episode: goals A (steps 0, 1) and B (step 2); query at step 3.
  # Location 0 written by A, location 1 by B, location 2 half by each
  # (0.2 from A's step 1, 0.2 from B's step 2), location 3 never.
  write = np.zeros((1, 5, 4))
  write[0, 0, 0] = 0.6
  write[0, 1, [0, 2]] = [0.3, 0.2]
  write[0, 2, [1, 2]] = [0.5, 0.2]
  write[0, 3] = 0.9  # The query step's own write: not counted.
  read = np.zeros((1, 5, 2, 4))
  read[0, 3, 0] = [0.6, 0.1, 0.2, 0.1]
  read[0, 3, 1] = [0.2, 0.1, 0.2, 0.5]
  # Head mean [0.4, 0.1, 0.2, 0.3]: A gets 0.4 + 0.1, B 0.1 + 0.1, the
  # unwritten location nothing; shares 0.5 / 0.7 and 0.2 / 0.7.
  sizes, query = np.asarray([[2, 1]]), np.asarray([3])
  named, other = decode.read_focus(write, read, sizes, np.asarray([1]), query)
  np.testing.assert_allclose(named, [0.2 / 0.7])
  np.testing.assert_allclose(other, [0.5 / 0.7])
  # Nothing written while goals were shown: no share (NaN).
  named, other = decode.read_focus(np.zeros_like(write), read, sizes,
                                   np.asarray([0]), query)
  assert np.isnan(named).all() and np.isnan(other).all()
  assert "no episode" in decode.focus_line(named, other)
  # Differences 0.2 and 0.4 (one episode has no share): mean 0.3, s.e.
  # sd(0.2, 0.4) / sqrt(2) = 0.1.
  line = decode.focus_line(np.asarray([0.6, np.nan, 0.5]),
                           np.asarray([0.4, np.nan, 0.1]))
  assert "get 0.550 of them, the next goal's 0.250" in line
  assert "difference +0.300 ± 0.100" in line and "; 2 episodes" in line


def test_read_focus_against_loops():
  rng = np.random.default_rng(4)
  batch, steps, slots, heads, goals = 6, 9, 5, 2, 3
  write = rng.uniform(size=(batch, steps, slots)) * (
      rng.uniform(size=(batch, steps, slots)) < 0.5)
  read = rng.dirichlet(np.ones(slots), size=(batch, steps, heads))
  sizes = rng.integers(0, 3, size=(batch, goals))
  sizes[:, 0] = np.maximum(sizes[:, 0], 1)
  query = sizes.sum(axis=1)
  chosen = np.asarray([rng.choice(np.flatnonzero(row)) for row in sizes])
  named, other = decode.read_focus(write, read, sizes, chosen, query)
  for b in range(batch):
    owner = np.zeros((slots, goals))
    t = 0
    for g in range(goals):
      for _ in range(sizes[b, g]):
        owner[:, g] += write[b, t]
        t += 1
    for n in range(slots):
      if owner[n].sum() > 0:
        owner[n] /= owner[n].sum()
    mass = np.zeros(goals)
    for n in range(slots):
      mass += np.mean(read[b, query[b], :, n]) * owner[n]
    following = chosen[b]
    for step in range(1, goals + 1):
      if sizes[b, (chosen[b] + step) % goals] > 0:
        following = (chosen[b] + step) % goals
        break
    assert named[b] == pytest.approx(mass[chosen[b]] / mass.sum())
    assert other[b] == pytest.approx(mass[following] / mass.sum())


def test_first_actions_stop_at_the_end():
  actions = np.asarray([[9, 9, 1, 2, 3, 4, 5, 6],
                        [9, 9, 9, 9, 0, 1, 2, 3],
                        [9, 1, 2, 3, 4, 5, 6, 0]])
  acting = np.asarray([[0, 0, 1, 1, 1, 1, 1, 1],
                       [0, 0, 0, 0, 1, 1, 1, 1],
                       [0, 1, 1, 1, 0, 0, 0, 0]], bool)
  targets = decode.first_actions(actions, acting, np.asarray([2, 4, 1]))
  np.testing.assert_array_equal(targets, [[1, 2, 3, 4, 5],
                                          [0, 1, 2, 3, -1],
                                          [1, 2, 3, -1, -1]])


def test_splits_cover_the_episodes_four_to_one():
  splits = decode.random_splits(10, 6, seed=3)
  assert len(splits) == 6
  for train, test in splits:
    assert len(train) == 8 and len(test) == 2
    assert sorted(np.concatenate([train, test])) == list(range(10))
  assert len({tuple(test) for _, test in splits}) > 1
  again = decode.random_splits(10, 6, seed=3)
  assert all(np.array_equal(a[1], b[1]) for a, b in zip(splits, again))
  with pytest.raises(ValueError, match="non-empty"):
    decode.random_splits(1, 1, seed=0)


def test_baseline_is_the_training_majority():
  assert decode.majority(np.asarray([3, 1, 3, 1, 0])) == 1  # Tie: smallest.
  targets = np.asarray([[1, -1], [1, 5], [2, 5], [3, -1], [1, 5], [2, 6],
                        [2, 6], [2, 6]])
  features = np.random.default_rng(0).normal(size=(8, 2))
  splits = [(np.asarray([0, 1, 2, 3, 4]), np.asarray([5, 6, 7])),
            (np.asarray([0, 3, 5, 6, 7]), np.asarray([1, 2, 4]))]
  first, second = decode.decode(features, targets, splits)
  # Offset 1, split 1: train 1 1 2 3 1 -> 1; test 2 2 2 -> 0.
  # Split 2: train 1 3 2 2 2 -> 2; test 1 2 1 -> 1/3.
  np.testing.assert_allclose(first.baseline, [0.0, 1 / 3])
  assert first.episodes == 8
  # Offset 2 has no target on episodes 0 and 3. Split 1: train 5 5 5 -> 5,
  # test 6 6 6 -> 0; split 2: train 6 6 6 -> 6, test 5 5 5 -> 0.
  np.testing.assert_allclose(second.baseline, [0.0, 0.0])
  assert second.episodes == 6
  assert np.all((first.decoder >= 0) & (first.decoder <= 1))


def test_summary_percentiles_by_hand():
  values = np.random.default_rng(0).permutation(np.linspace(0, 1, 21))
  mean, low, high = decode.summarise(np.append(values, np.nan))
  assert mean == pytest.approx(0.5)
  assert low == pytest.approx(0.05) and high == pytest.approx(0.95)
  lines = decode.table([decode.OffsetResult(1, values, values, 7)])
  assert lines[2] == "| 1 | 0.500 (0.050–0.950) | 0.500 (0.050–0.950) | 7 |"
  board = decode.OffsetResult(1, values * 0.5, values, 7)
  lines = decode.table([decode.OffsetResult(1, values, values, 7)], [board])
  assert "board at the cue" in lines[0] and lines[1].count("|") == 6
  assert lines[2] == ("| 1 | 0.500 (0.050–0.950) | 0.250 (0.025–0.475) | "
                      "0.500 (0.050–0.950) | 7 |")


def _task(model):
  task = shrdlu.ShrdluTask(shrdlu.ShrdluConfig(lessons=MINI))
  task.make_model(model)
  params = task.model.init(jax.random.PRNGKey(0),
                           jnp.zeros((1, 1, 97), jnp.float32))
  return task, params


def test_lstm_networks_are_refused():
  task, params = _task({"kind": "lstm", "hidden_size": 8, "num_layers": 1})
  with pytest.raises(ValueError, match="LSTM"):
    decode.record(task, params, jax.random.PRNGKey(0), 0, 4)


def test_tiny_fresh_dnc_end_to_end():
  task, params = _task(TINY)
  episodes, steps = 40, task.steps(0)
  rec = decode.record(task, params, jax.random.PRNGKey(1), 0, episodes)
  assert rec.memory.shape == (episodes, steps, 4, 3)
  assert rec.write.shape == (episodes, steps, 4)
  assert rec.read.shape == (episodes, steps, 2, 4)
  assert rec.actions.shape == rec.acting.shape == (episodes, steps)
  # Boards: 3 blocks, each block on one square; the presentation steps'
  # actions are ignored, so steps 0-2 (goals, goals, go cue) see the same
  # board; the board a step sees is the one before its action.
  assert rec.boards.shape == (episodes, steps, 54)
  codes = rec.boards.reshape(episodes, steps, 9, 6)
  np.testing.assert_array_equal(codes.sum(axis=(2, 3)), 3)
  assert codes.sum(axis=2).max() == 1
  np.testing.assert_array_equal(rec.boards[:, 0], rec.boards[:, 2])
  features = decode.board_features(rec.boards, rec.num_present)
  np.testing.assert_array_equal(features, rec.boards[:, 2])
  # Two goals of one constraint: the query is step 2, the first action's.
  np.testing.assert_array_equal(rec.num_present, 2)
  assert not rec.acting[:, :2].any() and rec.acting[:, 2].all()
  # The memory is recorded after each step's write: step 0's differs from
  # the initial memory.
  initial = task.model.core.initial_state(params, 1)[0].access_state.memory
  assert not np.allclose(rec.memory[:, 0], np.asarray(initial))
  # Two goals of one constraint each, the go cue naming one of them.
  np.testing.assert_array_equal(rec.goal_sizes[:, :2], 1)
  np.testing.assert_array_equal(rec.goal_sizes[:, 2:], 0)
  assert set(rec.chosen.tolist()) == {0, 1}
  named, other = decode.read_focus(rec.write, rec.read, rec.goal_sizes,
                                   rec.chosen, rec.num_present)
  np.testing.assert_allclose(named + other, 1.0)  # All written by the two.
  with pytest.raises(ValueError, match="lesson"):
    decode.record(task, params, jax.random.PRNGKey(1), 1, episodes)

  # The rest of run(): features, targets, splits on the same recording.
  features, locations = decode.goal_features(rec.memory, rec.write,
                                             rec.read, rec.num_present)
  assert features.shape == (episodes, 3) and locations.shape == (episodes,)
  targets = decode.first_actions(rec.actions, rec.acting, rec.num_present)
  results = decode.decode(features, targets,
                          decode.random_splits(episodes, 4, seed=0))
  assert [r.offset for r in results] == [1, 2, 3, 4, 5]
  for r in results:
    assert r.decoder.shape == r.baseline.shape == (4,)
    assert r.episodes == episodes  # L + 6 >= 7 action steps.
    for acc in (r.decoder, r.baseline):
      assert np.all((acc >= 0) & (acc <= 1))


def test_command_line_errors_exit_2(tmp_path, capsys):
  with pytest.raises(SystemExit) as exit_info:
    decode.main(["--checkpoint", str(tmp_path / "nothing")])
  assert exit_info.value.code == 2
  assert "decode: error: no Mini-SHRDLU run" in capsys.readouterr().err
  with pytest.raises(SystemExit) as exit_info:
    decode.main(["--checkpoint", str(tmp_path), "--splits", "0"])
  assert exit_info.value.code == 2
  assert "--splits" in capsys.readouterr().err
