"""Mini-SHRDLU agent: λ-advantages by hand, finite updates, exact resume."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.shrdlu import agent
from experiments.shrdlu import curriculum
from experiments.shrdlu import env
from experiments.shrdlu import train


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


TINY = agent.AgentConfig(hidden_size=16, memory_size=4, word_size=4,
                         num_reads=1, batch_size=4)
# Same episode length T for both lessons: one compile for the whole test.
MINI = (env.Lesson((1, 2), (3, 3), (1, 1), (1, 1)),
        env.Lesson((2, 2), (3, 3), (1, 1), (1, 1)))


def _trainer(out, config=TINY):
  run = train.RunConfig(eval_every=1, log_every=2, checkpoint_every=1000)
  cur = curriculum.Curriculum(lessons=MINI, window=4, threshold=0.01)
  return train.Trainer(run, out, config, curriculum=cur)


def _leaves(state):
  return [np.asarray(x) for x in jax.tree.leaves(state)]


def test_updates_are_finite_and_resume_exactly(tmp_path):
  straight = _trainer(tmp_path / "a")
  line = straight.train(4, log=lambda s: None)
  assert all(np.isfinite(x).all() for x in _leaves(straight.state.params))
  assert np.isfinite(line["loss"]) and line["step"] == 4
  # The low threshold passes lesson 1 and the curriculum moves on.
  assert straight.curriculum.lesson == 1 and straight.curriculum.history
  first = _trainer(tmp_path / "b")
  first.train(2, log=lambda s: None)  # Saves at step 2.
  resumed = _trainer(tmp_path / "b")
  resumed.restore()
  assert resumed.step == 2
  assert resumed.curriculum == first.curriculum
  resumed.train(2, log=lambda s: None)
  for a, b in zip(_leaves(straight.state), _leaves(resumed.state)):
    np.testing.assert_array_equal(a, b)
  assert resumed.curriculum == straight.curriculum
  # Parameters did change.
  fresh = agent.init_state(TINY, 0)
  assert any((a != b).any() for a, b in zip(_leaves(fresh.params),
                                             _leaves(straight.state.params)))


def test_resume_refuses_another_config(tmp_path):
  first = _trainer(tmp_path / "c")
  first.save()
  other = _trainer(tmp_path / "c", TINY.__class__(
      **{**TINY.__dict__, "lam": 0.75}))
  with pytest.raises(Exception, match="lam"):
    other.restore()


def test_bad_agent_config_names_the_field():
  with pytest.raises(ValueError, match="core"):
    agent.AgentConfig(core="gru")
  with pytest.raises(ValueError, match="lam"):
    agent.AgentConfig(lam=1.5)
