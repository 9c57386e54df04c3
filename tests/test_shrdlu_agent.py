"""Mini-SHRDLU under the one trainer: λ-advantages by hand, the two networks
as one model, training with the curriculum, exact resume, evaluation and the
episode picture.

The three runs (uninterrupted, interrupted, resumed) share one compilation
through an in-process persistent compilation cache: the same step and
evaluation, so the same executables.
"""

import json
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import checkpoints
from experiments import cli
from experiments import loop
from experiments import tasks
from experiments.shrdlu import agent
from experiments.shrdlu import eval as shrdlu_eval
from experiments.tasks import shrdlu
from experiments.tasks.base import Task, TaskBase


def test_lambda_advantages_by_hand():
  lam = 0.5
  # One episode: 1 presentation step (mask 0), 3 action steps, 1 padding.
  rewards = jnp.asarray([[0.0], [1.0], [2.0], [0.5], [0.0]])
  values = jnp.asarray([[9.0], [3.0], [2.0], [1.0], [7.0]])
  mask = jnp.asarray([[0], [1], [1], [1], [0]])
  adv, ret = agent.lambda_advantages(rewards, values, mask, lam)
  d3 = 0.5 + 0.0 - 1.0          # The last action: V after it is 0.
  d2 = 2.0 + 1.0 - 2.0
  d1 = 1.0 + 2.0 - 3.0
  expected = [0.0, d1 + lam * d2 + lam ** 2 * d3, d2 + lam * d3, d3, 0.0]
  np.testing.assert_allclose(adv[:, 0], expected, rtol=1e-6)
  np.testing.assert_allclose(ret[:, 0], [0.0, 3.5, 2.5, 0.5, 0.0])
  # λ = 1: advantage = Monte-Carlo return - V.
  adv1, _ = agent.lambda_advantages(rewards, values, mask, 1.0)
  np.testing.assert_allclose(adv1[1:4, 0], [3.5 - 3, 2.5 - 2, 0.5 - 1],
                             rtol=1e-6)


def _a2c_reference(logits, values, actions, rewards, mask, lam, beta):
  """The losses of docs/rl.md and their gradients with respect to the
  logits and values, with loops over episodes and time (NumPy, float64)."""
  steps, batch, _ = logits.shape
  policy = value = entropy_loss = 0.0
  d_logits, d_values = np.zeros_like(logits), np.zeros_like(values)
  for b in range(batch):
    m, r, v = mask[:, b], rewards[:, b], values[:, b]
    for t in range(steps):
      if not m[t]:
        continue
      ret = sum(r[u] for u in range(t, steps) if m[u])
      adv, weight = 0.0, 1.0
      for u in range(t, steps):
        if not m[u]:
          break
        following = v[u + 1] if u + 1 < steps and m[u + 1] else 0.0
        adv += weight * (r[u] + following - v[u])
        weight *= lam
      z = logits[t, b] - logits[t, b].max()
      p = np.exp(z) / np.exp(z).sum()
      log_p = np.log(p)
      h = -np.sum(p * log_p)
      policy -= adv * log_p[actions[t, b]] / batch
      value += 0.5 * (ret - v[t]) ** 2 / batch
      entropy_loss -= beta * h / batch
      taken = np.eye(len(p))[actions[t, b]]
      # d(-A log p_a)/dz = -A (e_a - p); dH/dz_k = -p_k (log p_k + H).
      d_logits[t, b] = (-adv * (taken - p) + beta * p * (log_p + h)) / batch
      d_values[t, b] = -(ret - v[t]) / batch
  return policy, value, entropy_loss, d_logits, d_values


def test_a2c_loss_and_its_gradient_against_loops():
  rng = np.random.default_rng(3)
  steps, batch, lam, beta = 7, 3, 0.75, 0.1
  logits = rng.normal(size=(steps, batch, 7))
  values = rng.normal(size=(steps, batch)) * 2
  actions = rng.integers(0, 7, size=(steps, batch))
  rewards = rng.normal(size=(steps, batch))
  # Presentation steps first (mask 0), then action steps, then padding.
  mask = np.zeros((steps, batch), bool)
  mask[2:6, 0] = mask[1:7, 1] = mask[3:5, 2] = True
  rewards = rewards * mask
  policy, value, entropy_loss, d_logits, d_values = _a2c_reference(
      logits, values, actions, rewards, mask, lam, beta)

  def loss(logits, values):
    traj = dict(logits=logits, values=values, actions=jnp.asarray(actions),
                rewards=jnp.asarray(rewards, jnp.float32),
                mask=jnp.asarray(mask))
    return agent.a2c_loss(traj, batch, lam, beta)

  (total, parts), grads = jax.value_and_grad(loss, argnums=(0, 1),
                                             has_aux=True)(
      jnp.asarray(logits, jnp.float32), jnp.asarray(values, jnp.float32))
  np.testing.assert_allclose(parts["policy_loss"], policy, rtol=1e-5)
  np.testing.assert_allclose(parts["value_loss"], value, rtol=1e-5)
  np.testing.assert_allclose(total, policy + value + entropy_loss, rtol=1e-5)
  np.testing.assert_allclose(parts["episode_return"],
                             rewards.sum() / batch, rtol=1e-5)
  # The advantage and the return are constants of the gradient: the value
  # gets only the value loss's pull, the logits only the policy's and the
  # entropy's.
  np.testing.assert_allclose(grads[0], d_logits, rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(grads[1], d_values, rtol=1e-4, atol=1e-6)


TINY = {"kind": "dnc", "hidden_size": 16, "memory_size": 4, "word_size": 4,
        "num_reads": 1, "controller_grad_clip": 10.0}
# Same episode length T for both lessons: one compile for the whole module.
MINI = [[[1, 2], [3, 3], [1, 1], [1, 1]], [[2, 2], [3, 3], [1, 1], [1, 1]]]


def _settings(**task):
  settings = tasks.preset("shrdlu", "cpu")
  # A threshold any policy passes: the curriculum moves at step 1.
  settings["task"].update(lessons=MINI, eval_episodes=8, threshold=0.01,
                          **task)
  settings["model"] = dict(TINY)
  settings["loop"].update(steps=4, batch_size=4, log_every=1, eval_every=1,
                          checkpoint_every=2)
  return settings


def _run(out, **kwargs):
  settings = _settings()
  return cli.run(settings, "shrdlu", out, progress=False,
                 save_settings={"task_name": "shrdlu", "preset": "cpu",
                                "settings": settings}, **kwargs)


def _latest(out):
  """``(TrainState, record)`` of the run's newest checkpoint."""
  task, model, optimizer_config, _, _ = cli.shrdlu_parts(_settings())
  template = loop.checkpoint_template(
      model.init, optimizer_config,
      task.sample(np.random.default_rng(0), 1).inputs)
  checkpointer = checkpoints.Checkpointer(out / "checkpoints", create=False)
  try:
    return checkpointer.restore(template)
  finally:
    checkpointer.close()


def _lines(out, kind):
  return [l for l in map(json.loads, (out / "metrics.jsonl").read_text()
                         .splitlines()) if l["kind"] == kind]


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
  out = tmp_path_factory.mktemp("shrdlu-full")
  return out, _run(out)


def test_two_networks_are_one_model():
  task = shrdlu.ShrdluTask(shrdlu.ShrdluConfig(lessons=MINI))
  assert isinstance(task, Task)
  assert TaskBase().make_model({}) is None  # The default: the CLI's DNC.
  model = task.make_model(TINY)
  inputs = np.random.default_rng(0).normal(size=(2, 2, 97)).astype(
      np.float32)
  params = model.init(jax.random.PRNGKey(0), inputs)
  assert {name.split("/")[0] for name in params} == {"policy", "value"}
  unrolled = model.apply(params, inputs)
  assert unrolled.shape == (2, 2, 8)
  state = model.core.initial_state(params, 2)
  for t, x in enumerate(inputs):
    y, state = model.core.step(params, x, state)
    np.testing.assert_allclose(y, unrolled[t], rtol=1e-5, atol=1e-6)


def test_trains_under_the_one_trainer(full_run):
  out, summary = full_run
  assert summary["step"] == 4 and summary["stopped"] is None
  state, record = _latest(out)
  assert all(np.isfinite(x).all() for x in jax.tree.leaves(state))
  train = _lines(out, "train")
  assert [l["step"] for l in train] == [1, 2, 3, 4]
  assert all(np.isfinite(l[k]) for l in train
             for k in ("loss", "fraction", "other", "perfect", "grad_norm"))
  evals = _lines(out, "eval")
  assert all(0 <= e["valid/fraction"] <= 1 for e in evals)
  # The low threshold passes lesson 1; lesson 2 is the last (no test).
  assert [c["lesson"] for c in _lines(out, "curriculum")] == [2]
  assert record["curriculum"]["lesson"] == 1
  assert record["curriculum"]["history"][0]["lesson"] == 1


def test_interrupted_and_resumed_equals_uninterrupted(full_run, tmp_path):
  out, _ = full_run
  first = _run(tmp_path, stop_after=1)
  assert first["stopped"] == "stop_after" and first["step"] == 1
  assert _latest(tmp_path)[1]["curriculum"]["lesson"] == 1
  resumed = _run(tmp_path, resume=True)
  assert resumed["step"] == 4
  (a, record_a), (b, record_b) = _latest(out), _latest(tmp_path)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(x, y)
  assert record_a["curriculum"] == record_b["curriculum"]
  assert ([l["loss"] for l in _lines(out, "train")]
          == [l["loss"] for l in _lines(tmp_path, "train")])


def test_resume_refuses_another_config(full_run, tmp_path):
  out, _ = full_run
  shutil.copytree(out, tmp_path / "run")
  settings = _settings(lam=0.75)
  with pytest.raises(checkpoints.CheckpointError, match="lam"):
    cli.run(settings, "shrdlu", tmp_path / "run", resume=True,
            progress=False)


def test_resume_may_lower_the_entropy_cost_when_asked(full_run, tmp_path):
  out, _ = full_run
  run = tmp_path / "run"
  shutil.copytree(out, run)
  settings = _settings(entropy_cost=0.01)
  settings["loop"]["steps"] = 5
  with pytest.raises(checkpoints.CheckpointError,
                     match="--allow-change entropy_cost"):
    cli.run(settings, "shrdlu", run, resume=True, progress=False)
  summary = cli.run(settings, "shrdlu", run, resume=True, progress=False,
                    may_change=("task.entropy_cost",))
  assert summary["step"] == 5
  (change,) = _lines(run, "change")
  assert change["step"] == 4 and change["changed"] == [
      "task.entropy_cost: saved 0.1, now 0.01"]
  # The new cost is the run's now: a plain resume at it is accepted.
  settings["loop"]["steps"] = 6
  assert cli.run(settings, "shrdlu", run, resume=True,
                 progress=False)["step"] == 6


def test_allow_change_names_map_to_their_settings():
  parser, _ = cli.build_parser("dnc-shrdlu-train", "shrdlu")
  args = parser.parse_args(["--out", "x", "--resume", "--allow-change",
                            "entropy_cost", "--allow-change",
                            "learning_rate", "--allow-change", "lam"])
  assert cli.allowed_changes(args) == ["task.entropy_cost",
                                       "optimizer.learning_rate", "task.lam"]


def test_eval_command_scores_lessons_and_draws_an_episode(full_run, tmp_path,
                                                          capsys):
  out, _ = full_run
  png = tmp_path / "episode.png"
  assert shrdlu_eval.main(["--checkpoint", str(out), "--episodes", "8",
                           "--picture", str(png)]) == 0
  text = capsys.readouterr().out
  assert "current lesson 2" in text and f"wrote {png}" in text
  rows = [line.split() for line in text.splitlines()
          if line.split() and line.split()[0] in ("1", "2")]
  assert len(rows) == 2
  for row in rows:  # perfect + success + incomplete = 1.
    assert sum(map(float, row[1:4])) == pytest.approx(1.0)
  assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_eval_prints_a_baseline_run_on_the_same_episodes(full_run, capsys):
  out, _ = full_run
  assert shrdlu_eval.main(["--checkpoint", str(out), "--baseline", str(out),
                           "--episodes", "8", "--lessons", "2"]) == 0
  text = capsys.readouterr().out
  assert text.count("dnc: step 4, current lesson 2") == 2
  rows = [line.split() for line in text.splitlines()
          if line.split() and line.split()[0] in ("1", "2")]
  assert len(rows) == 2
  for row in rows:  # Two groups of four; the same run, the same episodes.
    values = list(map(float, row[1:]))
    assert len(values) == 8 and values[:4] == values[4:]
    assert sum(values[:3]) == pytest.approx(1.0)


def test_commands_and_settings():
  parser, generated = cli.build_parser("dnc-shrdlu-train", "shrdlu")
  args = parser.parse_args(["--preset", "paper", "--lam", "0.75",
                            "--steps", "5"])
  settings = cli.settings_from_args(args, generated)
  assert settings["task"]["lam"] == 0.75 and settings["loop"]["steps"] == 5
  assert settings["model"]["hidden_size"] == 250
  for name in tasks.PRESETS["shrdlu"]:
    cli.validate_settings("shrdlu", tasks.preset("shrdlu", name))
  bad = tasks.preset("shrdlu", "cpu")
  bad["task"]["lam"] = 1.5
  with pytest.raises(ValueError, match="lam"):
    cli.validate_settings("shrdlu", bad)
  bad = tasks.preset("shrdlu", "cpu")
  bad["model"]["kind"] = "gru"
  with pytest.raises(ValueError, match="kind"):
    cli.validate_settings("shrdlu", bad)
  with pytest.raises(ValueError, match="mix"):
    shrdlu.ShrdluConfig(mix=1.5)
