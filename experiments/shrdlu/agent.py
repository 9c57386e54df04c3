"""Mini-SHRDLU agent: policy and value networks (DNC or LSTM) trained by
advantage actor-critic with λ-returns (PROTOCOL §2.6).

One update is one jit-compiled function (:func:`make_train_step`): reset a
batch of boards, run the closed loop (policy samples an action, the board
changes) with ``jax.lax.scan`` for a fixed ``T`` steps, compute the losses
and apply RMSProp. Only action-phase steps enter the losses; presentation
steps are inputs only (choice: the paper does not say).

Losses, summed over time, averaged over the batch of ``B`` episodes,
undiscounted:

- value: ``1/(2B) Σ_b Σ_t m_t (G_t - V_t)²``, ``G_t = Σ_{τ>=t} r_τ``
  (the paper's Monte-Carlo target);
- policy: ``-1/B Σ m_t log π(a_t) A_t``, ``A_t = Σ_{τ>=t} λ^{τ-t} δ_τ``,
  ``δ_t = r_t + V_{t+1} - V_t`` (``V`` after the last step = 0);
- entropy: ``-β/B Σ m_t H(π_t)`` (the paper's "entropy bonus").
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable, NamedTuple, Tuple

import haiku as hk
import jax
import jax.numpy as jnp
import optax

from dnc_jax import DNC
from dnc_jax import DNCConfig
from experiments.shrdlu import curriculum as curriculum_lib
from experiments.shrdlu import env


@dataclasses.dataclass(frozen=True)
class AgentConfig:
  """Networks and learning rule.

  Attributes:
    core: ``"dnc"`` (two DNCs) or ``"lstm"`` (two LSTMs + linear heads).
    hidden_size, num_layers: controller (DNC) or LSTM size.
    memory_size, word_size, num_reads: the DNC's memory.
    lam: λ of the advantage (0.5 or 0.75 in Table 2).
    entropy_cost: β.
    learning_rate, rms_decay, rms_eps: RMSProp.
    batch_size: episodes per update.
    grad_clip: element-wise clip of gradients on controller activations.
  """
  core: str = "dnc"
  hidden_size: int = 64
  num_layers: int = 1
  memory_size: int = 16
  word_size: int = 16
  num_reads: int = 2
  lam: float = 0.5
  entropy_cost: float = 0.05
  learning_rate: float = 3e-4
  rms_decay: float = 0.99
  rms_eps: float = 1e-5
  batch_size: int = 32
  grad_clip: float = 10.0

  def __post_init__(self):
    if self.core not in ("dnc", "lstm"):
      raise ValueError(f"core must be 'dnc' or 'lstm', got {self.core!r}")
    if not 0 <= self.lam <= 1:
      raise ValueError(f"lam must be in [0, 1], got {self.lam}")
    for name in ("hidden_size", "num_layers", "memory_size", "word_size",
                 "num_reads", "batch_size"):
      if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
        raise ValueError(f"{name} must be an int >= 1, got "
                         f"{getattr(self, name)!r}")


PRESETS = {
    # Small enough for a CPU: 64-unit controller, 16 x 16 memory.
    "cpu": AgentConfig(),
    # Table 2, "Figure 5 DNC": 2 x 250 controller, 32 x 100, 2 reads, λ 0.5.
    "paper": AgentConfig(hidden_size=250, num_layers=2, memory_size=32,
                         word_size=100, num_reads=2, lam=0.5,
                         entropy_cost=0.5, learning_rate=3e-5),
    # Table 2, "Fig 4a LSTM": 2 x 250 LSTM, λ 0.5 (CPU-sized learning rate).
    "lstm": AgentConfig(core="lstm", hidden_size=64, num_layers=2),
}


def _core(config: AgentConfig, output_size: int, name: str) -> hk.RNNCore:
  if config.core == "dnc":
    return DNC(DNCConfig(
        output_size=output_size, memory_size=config.memory_size,
        word_size=config.word_size, num_reads=config.num_reads,
        hidden_size=config.hidden_size, num_layers=config.num_layers,
        controller="lstm" if config.num_layers == 1 else "deep_lstm",
        controller_grad_clip=config.grad_clip, input_size=env.OBS_SIZE),
               name=name)
  layers = [hk.LSTM(config.hidden_size) for _ in range(config.num_layers)]
  return hk.DeepRNN(layers + [hk.Linear(output_size)], name=name)


def make_networks(config: AgentConfig) -> hk.MultiTransformed:
  """``init(key, obs [B, 97])``; ``apply[0](params, obs, state)`` (step)
  -> ``((logits [B, 7], value [B]), state)``; ``apply[1](params,
  batch)``. Policy and value are separate networks (separate parameters)."""

  def fns():
    policy = _core(config, env.NUM_ACTIONS, "policy")
    value = _core(config, 1, "value")

    def initial(batch):
      return policy.initial_state(batch), value.initial_state(batch)

    def step(obs, state):
      logits, ps = policy(obs, state[0])
      v, vs = value(obs, state[1])
      return (logits, v[:, 0]), (ps, vs)

    def init(obs):
      return step(obs, initial(obs.shape[0]))

    return init, (step, initial)

  return hk.without_apply_rng(hk.multi_transform(fns))


def lambda_advantages(rewards: jax.Array, values: jax.Array,
                      mask: jax.Array, lam: float) -> Tuple[jax.Array,
                                                            jax.Array]:
  """``(advantages, returns)``, time-major ``[T, B]``, undiscounted.

  ``mask`` marks the steps that count (action phase). ``δ_t = r_t +
  V_{t+1} m_{t+1} - V_t``; ``A_t = δ_t + λ m_{t+1} A_{t+1}``; ``G_t = r_t
  + m_{t+1} G_{t+1}``; all zero where ``mask`` is 0.
  """
  mask = mask.astype(values.dtype)
  next_mask = jnp.concatenate([mask[1:], jnp.zeros_like(mask[:1])])
  next_values = jnp.concatenate([values[1:], jnp.zeros_like(values[:1])])
  deltas = (rewards + next_mask * next_values - values) * mask

  def back(carry, x):
    adv, ret = carry
    delta, r, m, nm = x
    adv = (delta + lam * nm * adv) * m
    ret = (r + nm * ret) * m
    return (adv, ret), (adv, ret)

  zero = jnp.zeros_like(values[0])
  _, (adv, ret) = jax.lax.scan(back, (zero, zero),
                               (deltas, rewards * mask, mask, next_mask),
                               reverse=True)
  return adv, ret


class TrainState(NamedTuple):
  params: Any
  opt_state: Any
  key: jax.Array


def make_optimizer(config: AgentConfig) -> optax.GradientTransformation:
  return optax.rmsprop(config.learning_rate, decay=config.rms_decay,
                       eps=config.rms_eps)


def init_state(config: AgentConfig, seed: int) -> TrainState:
  key, init_key = jax.random.split(jax.random.PRNGKey(seed))
  params = make_networks(config).init(
      init_key, jnp.zeros((1, env.OBS_SIZE), jnp.float32))
  return TrainState(params, make_optimizer(config).init(params), key)


def episode_steps(lessons, upto: int, params: env.EnvParams) -> int:
  """A static ``T`` covering every episode of lessons ``0..upto``."""
  return max(x.max_steps for x in lessons[:upto + 1]) + params.slack


def rollout(networks, params, key, lesson_ids, table, tables, steps: int,
            env_params: env.EnvParams):
  """Runs ``B = len(lesson_ids)`` episodes for ``steps`` steps.

  Returns ``(final env state, trajectory)``, trajectory time-major with
  ``logits [T, B, 7]``, ``values``, ``actions``, ``rewards``, ``mask``.
  """
  batch = lesson_ids.shape[0]
  reset_key, run_key = jax.random.split(key)
  state, obs = env.batch_reset(jax.random.split(reset_key, batch),
                               table[lesson_ids], tables)
  net_state = networks.apply[1](params, batch)

  def body(carry, key):
    state, obs, net_state = carry
    (logits, value), net_state = networks.apply[0](params, obs, net_state)
    action = jax.random.categorical(key, logits).astype(jnp.int32)
    mask = (state.t >= state.num_present) & ~state.done
    state, obs, reward, _ = env.batch_step(state, action, env_params)
    out = dict(logits=logits, values=value, actions=action, rewards=reward,
               mask=mask)
    return (state, obs, net_state), out

  (state, _, _), traj = jax.lax.scan(body, (state, obs, net_state),
                                     jax.random.split(run_key, steps))
  return state, traj


@functools.lru_cache(maxsize=None)
def make_train_step(config: AgentConfig, steps: int,
                    env_params: env.EnvParams = env.EnvParams(),
                    mix: float = 0.1) -> Callable:
  """``train_step(train_state, lesson, table, tables) -> (state, metrics)``.

  ``lesson`` (int32 scalar) and the tables are arguments, so a new lesson
  only recompiles when ``steps`` changes. jit-compiled; cached per
  arguments, so runs in one process share the compiled function.
  """
  networks = make_networks(config)
  optimizer = make_optimizer(config)

  def loss_fn(params, key, lesson_ids, table, tables):
    final, traj = rollout(networks, params, key, lesson_ids, table, tables,
                          steps, env_params)
    mask = traj["mask"].astype(jnp.float32)
    values = traj["values"]
    adv, ret = lambda_advantages(traj["rewards"], jax.lax.stop_gradient(
        values), mask, config.lam)
    log_probs = jax.nn.log_softmax(traj["logits"])
    taken = jnp.take_along_axis(log_probs, traj["actions"][..., None],
                                axis=-1)[..., 0]
    entropy = -jnp.sum(jnp.exp(log_probs) * log_probs, axis=-1)
    batch = lesson_ids.shape[0]
    policy_loss = -jnp.sum(mask * taken * jax.lax.stop_gradient(adv)) / batch
    value_loss = 0.5 * jnp.sum(mask * (ret - values) ** 2) / batch
    entropy_loss = -config.entropy_cost * jnp.sum(mask * entropy) / batch
    loss = policy_loss + value_loss + entropy_loss
    fraction = jax.vmap(env.fraction_satisfied)(final)
    outcome = jax.vmap(env.outcome)(final)
    metrics = dict(
        loss=loss, policy_loss=policy_loss, value_loss=value_loss,
        entropy=jnp.sum(mask * entropy) / jnp.maximum(mask.sum(), 1),
        episode_return=jnp.sum(traj["rewards"]) / batch,
        all_done=jnp.all(final.done), fraction=fraction, outcome=outcome,
        lesson_ids=lesson_ids, min_moves=final.min_moves)
    return loss, metrics

  @jax.jit
  def train_step(state: TrainState, lesson, table, tables):
    key, lesson_key, run_key = jax.random.split(state.key, 3)
    lesson_ids = curriculum_lib.sample_lessons(lesson_key, lesson,
                                               config.batch_size, mix)
    grads, metrics = jax.grad(loss_fn, has_aux=True)(
        state.params, run_key, lesson_ids, table, tables)
    updates, opt_state = optimizer.update(grads, state.opt_state,
                                          state.params)
    params = optax.apply_updates(state.params, updates)
    metrics["grad_norm"] = optax.tree.norm(grads)
    return TrainState(params, opt_state, key), metrics

  return train_step


@functools.lru_cache(maxsize=None)
def make_eval(config: AgentConfig, steps: int, batch: int,
              env_params: env.EnvParams = env.EnvParams()) -> Callable:
  """``evaluate(params, key, lesson, table, tables) -> (outcome [B],
  fraction [B])``: episodes of one lesson, actions sampled as in training."""
  networks = make_networks(config)

  @jax.jit
  def evaluate(params, key, lesson, table, tables):
    ids = jnp.full((batch,), lesson, jnp.int32)
    final, _ = rollout(networks, params, key, ids, table, tables, steps,
                       env_params)
    return (jax.vmap(env.outcome)(final),
            jax.vmap(env.fraction_satisfied)(final))

  return evaluate
