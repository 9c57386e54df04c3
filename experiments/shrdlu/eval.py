r"""Scores a Mini-SHRDLU checkpoint per lesson (Fig. 5b).

  python -m experiments.shrdlu.eval --checkpoint RUN [--episodes 160]
      [--lessons N]

For each lesson up to the run's current one (or ``--lessons N``): the
fraction of episodes solved perfectly (all constraints satisfied at the end,
first reached after exactly the minimum number of moves), solved with extra
moves, and incomplete. Actions are sampled from the policy, as in training.
"""

from __future__ import annotations

import argparse
import pathlib

import jax
import jax.numpy as jnp
import numpy as np

from experiments.shrdlu import agent
from experiments.shrdlu import env
from experiments.shrdlu import train


def evaluate(trainer: train.Trainer, lessons: int, episodes: int, seed: int):
  """``[(lesson number, perfect, success, incomplete, fraction)]``."""
  rows = []
  key = jax.random.PRNGKey(seed)
  cur = trainer.curriculum
  steps = agent.episode_steps(cur.lessons, lessons - 1, trainer.env_params)
  run = agent.make_eval(trainer.config, steps, episodes, trainer.env_params)
  for lesson in range(lessons):
    key, sub = jax.random.split(key)
    outcome, fraction = jax.device_get(run(
        trainer.state.params, sub, jnp.int32(lesson), trainer.table,
        trainer.tables))
    rows.append((lesson + 1,) + tuple(
        float(np.mean(outcome == k)) for k in
        (env.PERFECT, env.SUCCESS, env.INCOMPLETE)) + (float(
            fraction.mean()),))
  return rows


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--checkpoint", required=True,
                      help="a run folder written by experiments.shrdlu.train")
  parser.add_argument("--episodes", type=int, default=160)
  parser.add_argument("--lessons", type=int, default=None,
                      help="score lessons 1..N (default: up to the current)")
  parser.add_argument("--seed", type=int, default=1)
  args = parser.parse_args(argv)
  out = pathlib.Path(args.checkpoint)
  from experiments import checkpoints  # pylint: disable=g-import-not-at-top
  record = checkpoints.Checkpointer(out / "checkpoints").read_record()
  run = train.RunConfig(**record["run"])
  trainer = train.Trainer(run, out, agent.AgentConfig(**record["agent"]),
                          env_params=env.EnvParams(**record["env"]))
  trainer.restore()
  lessons = args.lessons or trainer.curriculum.lesson + 1
  print(f"step {trainer.step}, current lesson "
        f"{trainer.curriculum.lesson + 1}, {args.episodes} episodes each")
  print(f"{'lesson':>6} {'perfect':>8} {'success':>8} {'incomplete':>10} "
        f"{'satisfied':>9}")
  for lesson, perfect, success, incomplete, fraction in evaluate(
      trainer, lessons, args.episodes, args.seed):
    print(f"{lesson:>6} {perfect:>8.3f} {success:>8.3f} {incomplete:>10.3f} "
          f"{fraction:>9.3f}")
  trainer.checkpointer.close()


if __name__ == "__main__":
  main()
