r"""Where a Mini-SHRDLU agent stands on one-move goals, and why.

Three probes on boards of 3 blocks with one-constraint goals one move away
(lesson 1's boards and goals, Extended Data Table 6):

``policy``: a trained run's policy with 1, 2 and 3 goals shown (lesson 1
has 2), the fraction of constraints satisfied at the end, how often the
goal was ever reached, the same per relation; beside it the same policy
on the same episodes with the constraints hidden (their blocks and
relation zeroed in every observation: what it scores without reading the
goal), for a DNC the same policy with its memory blanked at every step
(what it scores on what its controller alone carries), and a uniformly
random policy. If one goal does no better than two,
recalling which goal the go cue names is not what holds the agent back::

  python -m experiments.shrdlu.probe policy --checkpoint RUN [--episodes 1000]

``clone``: the same networks trained by plain supervision instead of
reinforcement learning: cross-entropy to a teacher that makes the move
satisfying the goal (then passes), the teacher's moves fed to the board.
``--model dnc`` is the policy DNC of the ``cpu`` preset, which sees the
constraint at the presentation step and must recall it when it acts;
``--model mlp`` is a two-layer perceptron given the constraint and the
board of the go step in one input (no recall). The figure printed is how
often the network's most likely first move satisfies the goal.
``--goals 2`` (DNC only) shows two goals and the teacher solves the one
the go cue names; it also prints how often the same move satisfies the
goal not named, which stays level with the first figure until the network
binds the cue's letter to its goal::

  python -m experiments.shrdlu.probe clone --model dnc|mlp [--seconds 300]
      [--goals 2] [--hidden-size 128] [--learning-rate 1e-3]

``rl``: the trainer's reinforcement learning (A2C with λ-advantages, the
same loss, RMSProp as the trainer's) on a feed-forward network given the
presentation steps' and the go step's observations beside the current
one, so nothing has to be remembered: does the learning rule find the
move when recall is taken out of the problem? The figure printed is the
fraction of constraints satisfied at the end of each logged update's
episodes::

  python -m experiments.shrdlu.probe rl [--goals 1|2] [--separate-value]
      [--hidden 256,256] [--entropy-cost 0.05] [--seconds 300]
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Dict, List, Optional

import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np
import optax

from experiments import loop
from experiments import tasks
from experiments.models import CoreModel
from experiments.shrdlu import agent
from experiments.shrdlu import env
from experiments.shrdlu import solver
from experiments.shrdlu.curriculum import lesson_table

RELATIONS = ("above", "below", "left of", "right of")


def one_move_lesson(goals: int) -> env.Lesson:
  """Extended Data Table 6 lesson 1's boards and goals, ``goals`` shown."""
  return env.Lesson((goals, goals), (3, 3), (1, 1), (1, 1))


def solving_moves(state: env.State) -> jax.Array:
  """``bool[7]``: the actions after which the chosen goal holds."""
  size = state.goal_sizes[state.chosen]

  def holds_after(action):
    board, _ = env.move(state.board, action)
    return env.constraints_satisfied(board, state.goals[state.chosen],
                                     size) == size

  return jax.vmap(holds_after)(jnp.arange(env.NUM_ACTIONS))


def teacher_action(state: env.State) -> jax.Array:
  """Pass once the chosen goal holds, else the first solving move."""
  size = state.goal_sizes[state.chosen]
  holds = env.constraints_satisfied(state.board, state.goals[state.chosen],
                                    size) == size
  return jnp.where(holds, solver.PASS,
                   jnp.argmax(solving_moves(state))).astype(jnp.int32)


def _rows(lesson: env.Lesson, batch: int) -> jax.Array:
  return jnp.asarray(np.repeat(lesson_table([lesson]), batch, axis=0))


def _summary(final: env.State) -> Dict[str, np.ndarray]:
  return dict(fraction=np.asarray(jax.vmap(env.fraction_satisfied)(final)),
              other=np.asarray(jax.vmap(env.other_fraction_satisfied)(final)),
              reached=np.asarray(final.solved_at) >= 0,
              relation=np.asarray(final.goals[:, 0, 0, 1]))


def random_policy(key, lesson: env.Lesson, episodes: int, tables,
                  params: env.EnvParams = env.EnvParams()
                  ) -> Dict[str, np.ndarray]:
  """Uniformly random actions on ``episodes`` episodes of ``lesson``."""
  reset_key, run_key = jax.random.split(key)
  state, _ = env.batch_reset(jax.random.split(reset_key, episodes),
                             _rows(lesson, episodes), tables)
  steps = lesson.max_steps + params.slack

  def body(state, key):
    action = jax.random.randint(key, (episodes,), 0, env.NUM_ACTIONS)
    state, _, _, _ = env.batch_step(state, action, params)
    return state, None

  final, _ = jax.lax.scan(body, state, jax.random.split(run_key, steps))
  return _summary(final)


# The observation's constraint fields: first block, relation, second block.
CONSTRAINT_FIELDS = slice(env.NUM_LETTERS,
                          env.NUM_LETTERS + 2 * env.MAX_BLOCKS
                          + env.NUM_RELATIONS)


def hide_constraints(core: CoreModel) -> CoreModel:
  """``core`` fed observations whose constraint fields are zero: goal
  letters, go cue and board stay, what the goals ask for is gone."""

  def step(params, obs, state):
    return core.step(params, obs.at[:, CONSTRAINT_FIELDS].set(0.0), state)

  return CoreModel(core.initial_state, step)


def _is_memory(path) -> bool:
  return any(getattr(key, "name", None) == "memory" for key in path)


def has_memory(state) -> bool:
  """Whether a core's state holds a DNC memory matrix (``memory`` field)."""
  paths = jax.tree_util.tree_flatten_with_path(state)[0]
  return any(_is_memory(path) for path, _ in paths)


def blank_memory(core: CoreModel) -> CoreModel:
  """``core`` whose memory matrices (every state field named ``memory``)
  are zero at the start of every step: what a step writes it can read back
  in that step, nothing written earlier survives. The controller's own
  state, usage and links are kept, so what is left is what the controller
  carries in its LSTM state."""

  def step(params, obs, state):
    blanked = jax.tree_util.tree_map_with_path(
        lambda path, leaf: jnp.zeros_like(leaf) if _is_memory(path)
        else leaf, state)
    return core.step(params, obs, blanked)

  return CoreModel(core.initial_state, step)


def policy_probe(task, params, key, episodes: int,
                 goal_counts=(1, 2, 3)) -> List[Dict]:
  """Rows ``{"policy", "goals", "fraction", "reached", "by_relation"}`` for
  the run's policy (actions sampled, as in training), the same policy with
  the constraints hidden (:func:`hide_constraints`) and, for a DNC, with its
  memory blanked every step (:func:`blank_memory`) on the same episodes,
  and a random policy."""
  rows = []
  core = task.model.core
  variants = [("trained", core), ("goal hidden", hide_constraints(core))]
  if has_memory(jax.eval_shape(lambda: core.initial_state(params, 1))):
    variants.append(("memory blanked", blank_memory(core)))
  for goals in goal_counts:
    lesson = one_move_lesson(goals)
    steps = lesson.max_steps + task.env_params.slack
    key, sub = jax.random.split(key)

    def play(core):
      final, _ = jax.jit(
          lambda p, k, r: agent.rollout(core, p, k, r, task.tables(), steps,
                                        task.env_params))(
          params, sub, _rows(lesson, episodes))
      return _summary(final)

    results = [(name, play(variant)) for name, variant in variants]
    results.append(("random", random_policy(sub, lesson, episodes,
                                            task.tables(), task.env_params)))
    for name, result in results:
      rows.append(dict(
          policy=name, goals=goals,
          fraction=float(result["fraction"].mean()),
          other=(float(result["other"].mean()) if goals > 1
                 else float("nan")),
          reached=float(result["reached"].mean()),
          by_relation=[float(result["fraction"][result["relation"] == r]
                             .mean()) if np.any(result["relation"] == r)
                       else float("nan") for r in range(4)]))
  return rows


# --- Behaviour cloning of the one-move teacher. ----------------------------

CPU_DNC = dict(kind="dnc", controller="lstm", hidden_size=64, num_layers=1,
               memory_size=16, word_size=16, num_reads=2,
               controller_grad_clip=10.0)


def _dnc_clone_loss(model, tables, lesson: env.Lesson, batch: int):
  steps = lesson.max_steps + env.EnvParams().slack
  rows = _rows(lesson, batch)

  def loss(params, key):
    state, obs = env.batch_reset(jax.random.split(key, batch), rows, tables)

    def body(carry, _):
      state, obs, net = carry
      outputs, net = model.core.step(params, obs, net)
      logits, _ = agent.split_outputs(outputs)
      target = jax.vmap(teacher_action)(state)
      acting = (state.t >= state.num_present) & ~state.done
      first = acting & (state.t == state.num_present)
      greedy = jnp.argmax(logits, -1)[:, None]
      solves = jnp.take_along_axis(jax.vmap(solving_moves)(state), greedy,
                                   1)[:, 0]
      solves_other = jnp.take_along_axis(
          jax.vmap(lambda s: solving_moves(env.other_goal(s)))(state), greedy,
          1)[:, 0]
      nll = -jnp.take_along_axis(jax.nn.log_softmax(logits),
                                 target[:, None], 1)[:, 0]
      state, obs, _, _ = env.batch_step(state, target)
      return (state, obs, net), (nll * acting, solves & first,
                                 solves_other & first)

    carry = (state, obs, model.core.initial_state(params, batch))
    _, (nll, first_solves, first_solves_other) = jax.lax.scan(
        body, carry, None, length=steps)
    return nll.sum() / batch, (first_solves.sum() / batch,
                               first_solves_other.sum() / batch)

  return loss


def _mlp_clone_loss(mlp, tables, lesson: env.Lesson, batch: int):
  rows = _rows(lesson, batch)

  def loss(params, key):
    state, shown = env.batch_reset(jax.random.split(key, batch), rows,
                                   tables)
    # One presentation step per goal constraint: step once to the go cue.
    state, go, _, _ = env.batch_step(state, jnp.zeros(batch, jnp.int32))
    logits = mlp.apply(params, jnp.concatenate([shown, go], -1))
    target = jax.vmap(teacher_action)(state)
    solves = jnp.take_along_axis(jax.vmap(solving_moves)(state),
                                 jnp.argmax(logits, -1)[:, None], 1)[:, 0]
    nll = -jnp.take_along_axis(jax.nn.log_softmax(logits), target[:, None],
                               1)[:, 0]
    return nll.mean(), (solves.mean(), jnp.full((), jnp.nan))

  return loss


def clone(model_kind: str, seconds: float, batch: int = 128,
          learning_rate: float = 1e-3, seed: int = 0, log_every: int = 200,
          max_updates: Optional[int] = None, out=sys.stdout, goals: int = 1,
          hidden_size: int = CPU_DNC["hidden_size"]) -> List[Dict]:
  """Supervised training on one-move episodes with ``goals`` goals of one
  constraint shown (the DNC only for more than one: the MLP sees a single
  presentation step); returns the log
  ``[{"update", "seconds", "loss", "first_move_solves"}]``, plus
  ``"solves_other_goal"`` (how often the same greedy first move solves the
  next goal shown instead, :func:`env.other_goal`) for several goals. With
  several goals the teacher solves the one the go cue names, so the DNC
  must bind the cue's letter to the constraint shown with it; as long as it
  does not, the two figures stay level."""
  if model_kind == "mlp" and goals != 1:
    raise ValueError(f"goals: the mlp clone sees one goal, got {goals}")
  if not 1 <= goals <= 10:
    raise ValueError(f"goals must be 1..10, got {goals}")
  lesson = one_move_lesson(goals)
  tables = env.tables()
  key = jax.random.PRNGKey(seed)
  if model_kind == "dnc":
    model = agent.make_model(dict(CPU_DNC, hidden_size=hidden_size))
    steps = lesson.max_steps + env.EnvParams().slack
    params = model.init(key, jnp.zeros((steps, batch, env.OBS_SIZE)))
    loss = _dnc_clone_loss(model, tables, lesson, batch)
  elif model_kind == "mlp":
    mlp = hk.without_apply_rng(hk.transform(
        lambda x: hk.nets.MLP([256, 256, env.NUM_ACTIONS])(x)))
    params = mlp.init(key, jnp.zeros((batch, 2 * env.OBS_SIZE)))
    loss = _mlp_clone_loss(mlp, tables, lesson, batch)
  else:
    raise ValueError(f"model must be 'dnc' or 'mlp', got {model_kind!r}")
  return _train(loss, optax.adam(learning_rate), params, key, seconds,
                max_updates, log_every, out,
                lambda value, solves: dict(
                    loss=float(value), first_move_solves=float(solves[0]),
                    **({} if goals == 1 else
                       {"solves_other_goal": float(solves[1])})))


def _train(loss, optimizer, params, key, seconds: float,
           max_updates: Optional[int], log_every: int, out,
           figures) -> List[Dict]:
  """Updates ``params`` on ``loss(params, key) -> (value, aux)`` until
  ``seconds`` pass or ``max_updates`` are made; every ``log_every`` updates
  (and at the end) logs ``{"update", "seconds", **figures(value, aux)}``.
  """
  opt_state = optimizer.init(params)

  @jax.jit
  def update(params, opt_state, key):
    (value, aux), grads = jax.value_and_grad(loss, has_aux=True)(params,
                                                                  key)
    updates, opt_state = optimizer.update(grads, opt_state)
    return optax.apply_updates(params, updates), opt_state, (value, aux)

  log, start, n = [], time.time(), 0
  while True:
    key, sub = jax.random.split(key)
    params, opt_state, (value, aux) = update(params, opt_state, sub)
    n += 1
    done = (time.time() - start >= seconds
            or (max_updates is not None and n >= max_updates))
    if n % log_every == 0 or done:
      row = dict(update=n, seconds=round(time.time() - start, 1),
                 **figures(value, aux))
      log.append(row)
      shown = " ".join(f"{name.replace('_', ' ')} {value:.3f}"
                       for name, value in row.items()
                       if name not in ("update", "seconds"))
      print(f"update {n:>6} {row['seconds']:>7.1f}s {shown}", file=out,
            flush=True)
    if done:
      return log


# --- The same RL recipe on a policy that needs no memory. -----------------

def _mlp_rl_loss(apply, tables, lesson: env.Lesson, batch: int, lam: float,
                 entropy_cost: float, env_params: env.EnvParams):
  """A2C (:func:`agent.a2c_loss`) on feed-forward policy and value heads
  that see every presentation step's observation (one per goal: one
  constraint each) and the go step's beside every later one, so nothing
  has to be remembered."""
  steps = lesson.max_steps + env_params.slack
  rows = _rows(lesson, batch)
  goals = lesson.goals[0]

  def loss(params, key):
    reset_key, run_key = jax.random.split(key)
    state, first = env.batch_reset(jax.random.split(reset_key, batch), rows,
                                   tables)
    shown, obs = [first], first
    for _ in range(goals - 1):
      state, obs, _, _ = env.batch_step(state, jnp.zeros(batch, jnp.int32),
                                        env_params)
      shown.append(obs)
    shown = jnp.concatenate(shown, -1)

    def body(carry, key):
      state, obs, go = carry
      # The go step's observation (the chosen goal's letter) stays in view.
      go = jnp.where((state.t == state.num_present)[:, None], obs, go)
      outputs = apply(params, jnp.concatenate([shown, go, obs], -1))
      logits, value = agent.split_outputs(outputs)
      action = jax.random.categorical(key, logits).astype(jnp.int32)
      mask = (state.t >= state.num_present) & ~state.done
      state, obs, reward, _ = env.batch_step(state, action, env_params)
      return (state, obs, go), dict(logits=logits, values=value,
                                    actions=action, rewards=reward,
                                    mask=mask)

    (final, _, _), traj = jax.lax.scan(
        body, (state, obs, jnp.zeros_like(obs)),
        jax.random.split(run_key, steps - goals + 1))
    value, metrics = agent.a2c_loss(traj, batch, lam, entropy_cost)
    metrics["satisfied"] = jnp.mean(jax.vmap(env.fraction_satisfied)(final))
    metrics["other"] = jnp.mean(jax.vmap(env.other_fraction_satisfied)(final))
    return value, metrics

  return loss


def rl_without_memory(seconds: float, batch: int = 128,
                      learning_rate: float = 1e-3, lam: float = 0.5,
                      entropy_cost: float = 0.05, hidden=(256, 256),
                      shared: bool = True, goals: int = 1, seed: int = 0,
                      log_every: int = 200, max_updates: Optional[int] = None,
                      out=sys.stdout) -> List[Dict]:
  """The ``cpu`` preset's reinforcement learning (A2C, λ-advantages, its
  optimiser at ``learning_rate``) on one-move episodes of ``goals``
  one-constraint goals, with an MLP given the constraints at every step
  (``hidden`` layer sizes; ``shared``: one MLP gives logits and value, else
  two). Returns the log ``[{"update", "seconds", "satisfied", "entropy",
  "value_loss"}]``, with ``"other_goal"`` (the goal not named,
  :func:`env.other_fraction_satisfied`) when ``goals > 1``."""
  lesson = one_move_lesson(goals)
  tables = env.tables()

  def heads(x):
    if shared:
      return hk.nets.MLP(list(hidden) + [agent.OUTPUT_SIZE])(x)
    return jnp.concatenate(
        [hk.nets.MLP(list(hidden) + [env.NUM_ACTIONS], name="policy")(x),
         hk.nets.MLP(list(hidden) + [1], name="value")(x)], -1)

  mlp = hk.without_apply_rng(hk.transform(heads))
  key = jax.random.PRNGKey(seed)
  params = mlp.init(key, jnp.zeros((batch, (goals + 2) * env.OBS_SIZE)))
  loss = _mlp_rl_loss(mlp.apply, tables, lesson, batch, lam, entropy_cost,
                      env.EnvParams())
  settings = dict(tasks.preset("shrdlu", "cpu")["optimizer"],
                  learning_rate=learning_rate)
  optimizer = loop.make_optimizer(loop.OptimizerConfig(**settings))
  return _train(loss, optimizer, params, key, seconds, max_updates,
                log_every, out,
                lambda _, m: dict(satisfied=float(m["satisfied"]),
                                  **({} if goals == 1 else
                                     {"other_goal": float(m["other"])}),
                                  entropy=float(m["entropy"]),
                                  value_loss=float(m["value_loss"])))


def main(argv: Optional[List[str]] = None) -> int:
  parser = argparse.ArgumentParser(prog="python -m experiments.shrdlu.probe",
                                   description=__doc__.split("\n\n")[0])
  sub = parser.add_subparsers(dest="probe", required=True)
  p = sub.add_parser("policy", help="a trained run's policy, 1-3 goals")
  p.add_argument("--checkpoint", required=True)
  p.add_argument("--episodes", type=int, default=1000)
  p.add_argument("--seed", type=int, default=5)
  c = sub.add_parser("clone", help="supervised cloning of one-move moves")
  c.add_argument("--model", choices=("dnc", "mlp"), required=True)
  c.add_argument("--seconds", type=float, default=300.0)
  c.add_argument("--batch-size", type=int, default=128)
  c.add_argument("--learning-rate", type=float, default=1e-3)
  c.add_argument("--seed", type=int, default=0)
  c.add_argument("--goals", type=int, default=1,
                 help="goals shown, the go cue names one (dnc only)")
  c.add_argument("--hidden-size", type=int, default=CPU_DNC["hidden_size"],
                 help="the DNC's controller units")
  r = sub.add_parser("rl", help="the RL recipe on an MLP with no recall")
  r.add_argument("--seconds", type=float, default=300.0)
  r.add_argument("--batch-size", type=int, default=128)
  r.add_argument("--learning-rate", type=float, default=1e-3)
  r.add_argument("--lam", type=float, default=0.5)
  r.add_argument("--entropy-cost", type=float, default=0.05)
  r.add_argument("--hidden", default="256,256",
                 help="comma-separated layer sizes")
  r.add_argument("--goals", type=int, default=1,
                 help="goals shown (lesson 1 of Table 6: 2)")
  r.add_argument("--separate-value", action="store_true",
                 help="a second MLP for the value (as the agent's networks)")
  r.add_argument("--seed", type=int, default=0)
  args = parser.parse_args(argv)
  if args.probe == "rl":
    if args.batch_size < 1 or args.seconds <= 0 or not 1 <= args.goals <= 3:
      parser.exit(2, "probe: error: --batch-size and --seconds must be "
                  "positive, --goals 1..3\n")
    rl_without_memory(args.seconds, args.batch_size, args.learning_rate,
                      args.lam, args.entropy_cost,
                      tuple(int(h) for h in args.hidden.split(",")),
                      not args.separate_value, args.goals, args.seed)
    return 0
  if args.probe == "clone":
    if args.batch_size < 1 or args.seconds <= 0:
      parser.exit(2, "probe: error: --batch-size and --seconds must be "
                  "positive\n")
    try:
      clone(args.model, args.seconds, args.batch_size, args.learning_rate,
            args.seed, goals=args.goals, hidden_size=args.hidden_size)
    except ValueError as error:
      parser.exit(2, f"probe: error: {error}\n")
    return 0
  from experiments.checkpoints import CheckpointError
  from experiments.shrdlu.eval import load_run
  if args.episodes < 1:
    parser.exit(2, f"probe: error: --episodes must be >= 1, got "
                f"{args.episodes}\n")
  try:
    task, params, record = load_run(args.checkpoint)
  except (ValueError, CheckpointError) as error:
    parser.exit(2, f"probe: error: {error}\n")
  print(f"step {record['step']}; {args.episodes} episodes per row, 3 blocks, "
        f"one constraint one move away, actions sampled")
  print(f"| policy | goals | satisfied | other goal | ever reached | "
        f"{' | '.join(RELATIONS)} |")
  print("|---|---|---|---|---|" + "---|" * len(RELATIONS))
  for row in policy_probe(task, params, jax.random.PRNGKey(args.seed),
                          args.episodes):
    rel = " | ".join(f"{v:.3f}" for v in row["by_relation"])
    other = "" if np.isnan(row["other"]) else f"{row['other']:.3f}"
    print(f"| {row['policy']} | {row['goals']} | {row['fraction']:.3f} | "
          f"{other} | {row['reached']:.3f} | {rel} |")
  return 0


if __name__ == "__main__":
  sys.exit(main())
