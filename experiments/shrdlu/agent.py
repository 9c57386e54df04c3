"""Mini-SHRDLU agent: policy and value networks (DNC or LSTM) and the pieces
of advantage actor-critic with λ-returns (PROTOCOL §2.6).

The two networks have separate parameters but are one
:class:`experiments.models.Model` (:func:`make_model`): its parameters are one
pytree (``policy/...`` and ``value/...``), its output ``[.., 8]`` is the
policy's 7 logits then the value, so the one trainer's optimiser and
checkpoints handle the pair unchanged. :func:`rollout` runs the closed loop
(policy samples an action, the board changes) with ``jax.lax.scan`` for a
fixed ``T`` steps; :func:`a2c_loss` turns a rollout into the losses. The
task (:mod:`experiments.tasks.shrdlu`) puts them in one jit-compiled update.
Only action-phase steps enter the losses; presentation steps are inputs only
(choice: the paper does not say).

Losses, summed over time, averaged over the batch of ``B`` episodes,
undiscounted:

- value: ``1/(2B) Σ_b Σ_t m_t (G_t - V_t)²``, ``G_t = Σ_{τ>=t} r_τ``
  (the paper's Monte-Carlo target);
- policy: ``-1/B Σ m_t log π(a_t) A_t``, ``A_t = Σ_{τ>=t} λ^{τ-t} δ_τ``,
  ``δ_t = r_t + V_{t+1} - V_t`` (``V`` after the last step = 0);
- entropy: ``-β/B Σ m_t H(π_t)`` (the paper's "entropy bonus").
"""

from __future__ import annotations

from typing import Any, Dict, Tuple

import haiku as hk
import jax
import jax.numpy as jnp

from dnc_jax import DNC
from dnc_jax import DNCConfig
from experiments.models import CoreModel, Model
from experiments.shrdlu import env

KINDS = ("dnc", "lstm")
OUTPUT_SIZE = env.NUM_ACTIONS + 1  # 7 policy logits, then the value.


def network_configs(model: Dict[str, Any]) -> Tuple[str, DNCConfig,
                                                    DNCConfig]:
  """``(kind, policy config, value config)`` from a preset's model section.

  ``model`` holds ``kind`` (``"dnc"``, default, or ``"lstm"``: only
  ``hidden_size`` and ``num_layers`` count) and :class:`DNCConfig` fields.

  Raises:
    ValueError: an unknown kind or a bad field (named).
  """
  fields = dict(model)
  kind = fields.pop("kind", "dnc")
  if kind not in KINDS:
    raise ValueError(f"model kind must be one of {KINDS}, got {kind!r}")
  policy = DNCConfig(output_size=env.NUM_ACTIONS, input_size=env.OBS_SIZE,
                     **fields)
  value = DNCConfig(output_size=1, input_size=env.OBS_SIZE, **fields)
  return kind, policy, value


def _core(kind: str, config: DNCConfig, name: str) -> hk.RNNCore:
  if kind == "dnc":
    return DNC(config, name=name)
  layers = [hk.LSTM(config.hidden_size) for _ in range(config.num_layers)]
  return hk.DeepRNN(layers + [hk.Linear(config.output_size)], name=name)


def _transformed(model: Dict[str, Any]) -> hk.MultiTransformed:
  kind, policy_config, value_config = network_configs(model)

  def fns():
    policy = _core(kind, policy_config, "policy")
    value = _core(kind, value_config, "value")

    def initial_state(batch_size):
      return policy.initial_state(batch_size), value.initial_state(batch_size)

    def step(obs, state):
      logits, policy_state = policy(obs, state[0])
      v, value_state = value(obs, state[1])
      return (jnp.concatenate([logits, v], axis=-1),
              (policy_state, value_state))

    def unroll(inputs):
      outputs, _ = hk.dynamic_unroll(step, inputs,
                                     initial_state(inputs.shape[1]))
      return outputs

    def init(inputs):  # One step creates every parameter.
      return step(inputs[0], initial_state(inputs.shape[1]))

    return init, (initial_state, step, unroll)

  return hk.without_apply_rng(hk.multi_transform(fns))


def make_model(model: Dict[str, Any]) -> Model:
  """Policy and value networks as one :class:`Model`.

  ``init(rng, inputs [T, B, 97]) -> params`` (both networks, one pytree);
  ``apply(params, inputs [T, B, 97]) -> [T, B, 8]`` (logits, value);
  ``core.initial_state(params, B)``, ``core.step(params, obs [B, 97],
  state) -> ([B, 8], state)``; ``state = (policy state, value state)``.
  """
  transformed = _transformed(model)
  initial_state, step, unroll = transformed.apply
  return Model(transformed.init, unroll, CoreModel(initial_state, step))


def split_outputs(outputs: jax.Array) -> Tuple[jax.Array, jax.Array]:
  """``(logits [..., 7], value [...])`` of the model's ``[..., 8]``."""
  return outputs[..., :env.NUM_ACTIONS], outputs[..., env.NUM_ACTIONS]


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


def episode_steps(lessons, upto: int, params: env.EnvParams) -> int:
  """A static ``T`` covering every episode of lessons ``0..upto``."""
  return max(x.max_steps for x in lessons[:upto + 1]) + params.slack


def rollout(core: CoreModel, params, key, rows, tables, steps: int,
            env_params: env.EnvParams, keep_states: bool = False):
  """Runs ``B = len(rows)`` episodes (``rows``: ``int32[B, 8]`` lessons)
  for ``steps`` steps.

  Returns ``(final env state, trajectory)``, trajectory time-major with
  ``logits [T, B, 7]``, ``values``, ``actions``, ``rewards``, ``mask``
  (action phase); with ``keep_states`` also ``env`` (the env state before
  each step) and ``net`` (the networks' state after it).
  """
  batch = rows.shape[0]
  reset_key, run_key = jax.random.split(key)
  state, obs = env.batch_reset(jax.random.split(reset_key, batch), rows,
                               tables)
  net_state = core.initial_state(params, batch)

  def body(carry, key):
    state, obs, net_state = carry
    outputs, net_state = core.step(params, obs, net_state)
    logits, value = split_outputs(outputs)
    action = jax.random.categorical(key, logits).astype(jnp.int32)
    mask = (state.t >= state.num_present) & ~state.done
    before = state
    state, obs, reward, _ = env.batch_step(state, action, env_params)
    out = dict(logits=logits, values=value, actions=action, rewards=reward,
               mask=mask)
    if keep_states:
      out.update(env=before, net=net_state)
    return (state, obs, net_state), out

  (state, _, _), traj = jax.lax.scan(body, (state, obs, net_state),
                                     jax.random.split(run_key, steps))
  return state, traj


def a2c_loss(traj, batch_size: int, lam: float, entropy_cost: float
             ) -> Tuple[jax.Array, Dict[str, jax.Array]]:
  """``(loss, {policy_loss, value_loss, entropy, episode_return})`` of a
  :func:`rollout` trajectory (see the module docstring)."""
  mask = traj["mask"].astype(jnp.float32)
  values = traj["values"]
  adv, ret = lambda_advantages(traj["rewards"],
                               jax.lax.stop_gradient(values), mask, lam)
  log_probs = jax.nn.log_softmax(traj["logits"])
  taken = jnp.take_along_axis(log_probs, traj["actions"][..., None],
                              axis=-1)[..., 0]
  entropy = -jnp.sum(jnp.exp(log_probs) * log_probs, axis=-1)
  policy_loss = -jnp.sum(mask * taken * jax.lax.stop_gradient(adv))
  policy_loss /= batch_size
  value_loss = 0.5 * jnp.sum(mask * (ret - values) ** 2) / batch_size
  entropy_loss = -entropy_cost * jnp.sum(mask * entropy) / batch_size
  loss = policy_loss + value_loss + entropy_loss
  return loss, dict(
      policy_loss=policy_loss, value_loss=value_loss,
      entropy=jnp.sum(mask * entropy) / jnp.maximum(mask.sum(), 1),
      episode_return=jnp.sum(traj["rewards"] * mask) / batch_size)
