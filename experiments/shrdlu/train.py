r"""Trains a Mini-SHRDLU agent through the Table 6 curriculum.

  python -m experiments.shrdlu.train --preset cpu --out runs/shrdlu \
      [--steps N] [--resume] [--seed S]

Writes ``OUT/metrics.jsonl`` (one line per ``--log-every`` updates) and
checkpoints (parameters, optimiser state, rng key; the curriculum and the
configuration in the JSON record) under ``OUT/checkpoints``. ``--resume``
continues bitwise-identically from the latest checkpoint.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import sys
import time
from typing import Dict, Optional

import jax
import jax.numpy as jnp
import numpy as np

from experiments import checkpoints
from experiments.shrdlu import agent
from experiments.shrdlu import curriculum as curriculum_lib
from experiments.shrdlu import env


@dataclasses.dataclass(frozen=True)
class RunConfig:
  """A run: agent, environment, curriculum and bookkeeping settings."""
  preset: str = "cpu"
  seed: int = 0
  eval_every: int = 20       # Updates between curriculum tests (paper 400).
  log_every: int = 10
  checkpoint_every: int = 100
  threshold: float = 0.85
  window: int = 160
  mix: float = 0.1

  def to_json(self) -> Dict:
    return dataclasses.asdict(self)


class Trainer:
  """Holds the train state, curriculum and compiled steps of one run."""

  def __init__(self, run: RunConfig, out, agent_config:
               Optional[agent.AgentConfig] = None,
               curriculum: Optional[curriculum_lib.Curriculum] = None,
               env_params: env.EnvParams = env.EnvParams()):
    if run.preset not in agent.PRESETS and agent_config is None:
      raise ValueError(f"preset must be one of {sorted(agent.PRESETS)}, "
                       f"got {run.preset!r}")
    self.run = run
    self.config = agent_config or agent.PRESETS[run.preset]
    self.env_params = env_params
    self.out = pathlib.Path(out)
    self.out.mkdir(parents=True, exist_ok=True)
    self.curriculum = curriculum or curriculum_lib.Curriculum(
        threshold=run.threshold, window=run.window, mix=run.mix)
    self.state = agent.init_state(self.config, run.seed)
    self.step = 0
    self.table = jnp.asarray(self.curriculum.table())
    self.tables = env.tables()
    self._steps = {}
    self.checkpointer = checkpoints.Checkpointer(self.out / "checkpoints")

  def record(self) -> Dict:
    return dict(run=self.run.to_json(),
                agent=dataclasses.asdict(self.config),
                env=dataclasses.asdict(self.env_params),
                curriculum=self.curriculum.to_json())

  def save(self):
    self.checkpointer.save(self.step, self.state._asdict(), self.record())

  def restore(self):
    state, record = self.checkpointer.restore(self.state._asdict())
    # Logging and checkpoint intervals may change on resume; nothing else.
    keep = ("preset", "seed", "eval_every", "threshold", "window", "mix")
    now = self.record()
    saved = dict(run={k: record["run"].get(k) for k in keep},
                 agent=record["agent"], env=record["env"])
    differences = checkpoints.describe_differences(
        saved, dict(run={k: now["run"][k] for k in keep}, agent=now["agent"],
                    env=now["env"]))
    if differences:
      raise checkpoints.CheckpointError(
          "the checkpoint belongs to another configuration: "
          + "; ".join(differences))
    self.state = agent.TrainState(**state)
    self.curriculum = curriculum_lib.Curriculum.from_json(record["curriculum"])
    self.table = jnp.asarray(self.curriculum.table())
    self.step = int(record["step"])

  def _train_step(self):
    steps = agent.episode_steps(self.curriculum.lessons,
                                self.curriculum.lesson, self.env_params)
    if steps not in self._steps:
      self._steps[steps] = agent.make_train_step(
          self.config, steps, self.env_params, self.curriculum.mix)
    return self._steps[steps]

  def train(self, updates: int, log=print):
    """Runs ``updates`` more updates; returns the last metrics line."""
    line = None
    window = []
    start = time.time()
    with open(self.out / "metrics.jsonl", "a") as metrics_file:
      for _ in range(updates):
        lesson = self.curriculum.lesson
        self.state, metrics = self._train_step()(
            self.state, jnp.int32(lesson), self.table, self.tables)
        metrics = jax.device_get(metrics)
        self.step += 1
        self.curriculum.record(metrics["lesson_ids"], metrics["fraction"])
        window.append(metrics)
        passed = (self.step % self.run.eval_every == 0
                  and self.curriculum.evaluate(self.step))
        if passed:
          log(f"step {self.step}: lesson {lesson + 1} passed "
              f"(score {self.curriculum.history[-1]['score']:.3f})")
        if self.step % self.run.log_every == 0 or passed:
          line = self._summary(window, lesson, time.time() - start)
          metrics_file.write(json.dumps(line) + "\n")
          metrics_file.flush()
          log(" ".join(f"{k} {v:.4g}" if isinstance(v, float) else
                       f"{k} {v}" for k, v in line.items()))
          window, start = [], time.time()
        if self.step % self.run.checkpoint_every == 0:
          self.save()
    self.save()
    return line

  def _summary(self, window, lesson, seconds) -> Dict:
    mean = lambda k: float(np.mean([m[k] for m in window]))
    current = np.concatenate([m["lesson_ids"] == lesson for m in window])
    outcome = np.concatenate([m["outcome"] for m in window])[current]
    fraction = np.concatenate([m["fraction"] for m in window])[current]
    score = self.curriculum.score()
    return dict(
        step=self.step, lesson=lesson + 1, loss=mean("loss"),
        policy_loss=mean("policy_loss"), value_loss=mean("value_loss"),
        entropy=mean("entropy"), episode_return=mean("episode_return"),
        grad_norm=mean("grad_norm"),
        fraction=float(fraction.mean()) if fraction.size else None,
        perfect=float((outcome == env.PERFECT).mean()) if outcome.size
        else None,
        window_score=score, updates_per_s=len(window) / max(seconds, 1e-9))


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--preset", choices=sorted(agent.PRESETS),
                      default="cpu")
  parser.add_argument("--out", required=True)
  parser.add_argument("--steps", type=int, default=1000,
                      help="total updates (a resumed run stops there too)")
  parser.add_argument("--resume", action="store_true")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--eval-every", type=int, default=20)
  parser.add_argument("--log-every", type=int, default=10)
  parser.add_argument("--checkpoint-every", type=int, default=100)
  args = parser.parse_args(argv)
  run = RunConfig(preset=args.preset, seed=args.seed,
                  eval_every=args.eval_every, log_every=args.log_every,
                  checkpoint_every=args.checkpoint_every)
  trainer = Trainer(run, args.out)
  if args.resume:
    trainer.restore()
    print(f"resumed at step {trainer.step}, lesson "
          f"{trainer.curriculum.lesson + 1}", flush=True)
  elif trainer.checkpointer.latest_step() is not None:
    sys.exit(f"{args.out} already holds checkpoints; pass --resume")
  trainer.train(max(args.steps - trainer.step, 0),
                log=lambda s: print(s, flush=True))
  trainer.checkpointer.close()


if __name__ == "__main__":
  main()
