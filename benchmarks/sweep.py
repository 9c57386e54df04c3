"""Sweep members in one program vs the same members one after another.

    python -m benchmarks.sweep                          # S = 1, 4, 8, 20
    python -m benchmarks.sweep --members 1,4 --steps 5 --hidden-size 32
    python -m benchmarks.sweep --task babi              # dnc1, S = 1, 4

For each ``S``: *together* is the sweep step of :mod:`experiments.sweep`
(``S`` members ``vmap``-ed in one jit-compiled step, one device); *one
after another* is the same step compiled for one member and run for each
member in turn (one compilation, reused). Both time ``--steps`` steps per
member on batches drawn beforehand (the first, compiling, step is timed
apart). Printed: member-steps per second, sequence-steps (batch x time)
per second, the speed-up of *together*, and the compile times, as a
Markdown table (``--json`` writes the rows). The model and task are a
preset's (default: repeat copy ``default``), flags override them. With
``--task babi`` the model is a bAbI preset's (default ``dnc1``) on random
word ids of one bAbI bucket length (``--length``, default 128; a
``--vocab-size`` of 160 like en-10k's), with the bAbI loss, so no data
need be read.
Wall-clock on this machine: compare rows of one run.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Dict, List, Optional

import jax
import numpy as np

from dnc_jax import DNCConfig
from experiments import distributed, sweep, tasks
from experiments.loop import OptimizerConfig
from experiments.cli import babi_model_config
from experiments.models import Model, babi_model, unrolled_dnc
from experiments.tasks import babi, bit


class BabiLengths:
  """bAbI-shaped batches without the data: random word ids ``[T, B]`` of
  one bucket length, an answer every 8th word; bAbI's loss and metrics."""

  name = "babi"
  loss = babi.BabiTask.loss
  metrics = babi.BabiTask.metrics

  def __init__(self, length: int, vocab_size: int):
    self.max_time, self.vocab_size = length, vocab_size
    self.input_size = self.output_size = vocab_size

  def sample(self, rng: np.random.Generator, batch_size: int):
    shape = (self.max_time, batch_size)
    mask = np.zeros(shape, np.float32)
    mask[7::8] = 1.0
    return babi.BabiBatch(
        rng.integers(1, self.vocab_size, shape).astype(np.int32),
        (rng.integers(1, self.vocab_size, shape) * mask).astype(np.int32),
        mask)


def babi_parts(preset: str, model_fields, length: int, vocab_size: int):
  """``(task, model, optimiser config)`` of the bAbI benchmark."""
  settings = tasks.preset("babi", preset)
  settings["model"].update(model_fields)
  task = BabiLengths(length, vocab_size)
  config = babi_model_config(settings["kind"], settings["model"], vocab_size)
  transformed = babi_model(settings["kind"], config)
  model = Model(babi.one_hot_inputs(transformed.init, vocab_size),
                babi.one_hot_inputs(transformed.apply, vocab_size))
  return task, model, OptimizerConfig(**settings["optimizer"]), settings


def _time(step, state, batches):
  started = time.perf_counter()
  for batch in batches:
    state, metrics = step(state, batch)
  jax.block_until_ready(metrics)
  return time.perf_counter() - started, state


def measure(task, model, base: OptimizerConfig, members_count: int,
            steps: int, batch_size: int, rounds: int = 3,
            members_per_step: Optional[int] = None) -> Dict:
  """Times ``members_count`` members together and one after another.

  Both ways are compiled first, then timed in ``rounds`` alternating rounds
  (together, one by one, together, ...) of ``steps`` steps per member; each
  way's figure is its median round, so neither gains from running second
  (on this CPU the same program timed second ran up to ~20% faster).
  """
  members = sweep.make_members(base, list(range(members_count)), {})
  seq_per_step = batch_size * task.max_time
  row = {"members": members_count, "steps": steps, "batch": batch_size,
         "time": task.max_time, "rounds": rounds,
         "members_per_step": members_per_step}
  # Together: one program, S members.
  mesh = distributed.make_mesh(members_count, batch_size, 1)
  sample = sweep.MemberSampler(task, members, batch_size, mesh)
  batches = [sample(s) for s in range(steps + 1)]
  host = sweep.initial_members(model.init, members,
                               np.asarray(sample.one(0, 0).inputs))
  step = sweep.make_sweep_step(model.apply, task, base, mesh,
                               members_per_step)
  state = sweep.place_state(host, mesh)
  compile_s, state = _time(step, state, batches[:1])
  # One after another: one single-member program, each member in turn.
  one_mesh = distributed.make_mesh(1, batch_size, 1)
  one_step = sweep.make_sweep_step(model.apply, task, base, one_mesh)
  singles = []
  for m, member in enumerate(members):
    one_sample = sweep.MemberSampler(task, [member], batch_size, one_mesh)
    singles.append(([one_sample(s) for s in range(steps + 1)],
                    sweep.place_state(jax.tree.map(
                        lambda x, m=m: x[m:m + 1], host), one_mesh)))
  single_compile = None
  for m, (one_batches, one_state) in enumerate(singles):
    first, one_state = _time(one_step, one_state, one_batches[:1])
    single_compile = first if single_compile is None else single_compile
    singles[m] = (one_batches, one_state)
  together_rounds, sequential_rounds = [], []
  for _ in range(rounds):
    seconds, state = _time(step, state, batches[1:])
    together_rounds.append(seconds)
    total = 0.0
    for m, (one_batches, one_state) in enumerate(singles):
      seconds, one_state = _time(one_step, one_state, one_batches[1:])
      singles[m] = (one_batches, one_state)
      total += seconds
    sequential_rounds.append(total)
  row.update(together_s=float(np.median(together_rounds)),
             together_compile_s=compile_s,
             sequential_s=float(np.median(sequential_rounds)),
             sequential_compile_s=single_compile)
  total = row["sequential_s"]
  work = members_count * steps
  row.update(
      together_member_steps_per_s=work / row["together_s"],
      sequential_member_steps_per_s=work / total,
      together_seq_steps_per_s=work * seq_per_step / row["together_s"],
      sequential_seq_steps_per_s=work * seq_per_step / total,
      speedup=total / row["together_s"])
  return row


def table(rows: List[Dict]) -> str:
  lines = ["| S | together member-steps/s | one-by-one member-steps/s | "
           "together seq-steps/s | one-by-one seq-steps/s | speed-up | "
           "compile together / one (s) |",
           "|---|---|---|---|---|---|---|"]
  for r in rows:
    lines.append(
        f"| {r['members']} | {r['together_member_steps_per_s']:.1f} | "
        f"{r['sequential_member_steps_per_s']:.1f} | "
        f"{r['together_seq_steps_per_s']:.0f} | "
        f"{r['sequential_seq_steps_per_s']:.0f} | {r['speedup']:.2f}x | "
        f"{r['together_compile_s']:.1f} / {r['sequential_compile_s']:.1f} |")
  return "\n".join(lines)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--task", default="repeat_copy",
                      help="a bit task or babi")
  parser.add_argument("--preset", default=None,
                      help="default: 'default', bAbI 'dnc1'")
  parser.add_argument("--members", default=None,
                      help="comma-separated member counts S (default "
                      "1,4,8,20; bAbI 1,4)")
  parser.add_argument("--length", type=int, default=128,
                      help="bAbI: the bucket length T")
  parser.add_argument("--vocab-size", type=int, default=160,
                      help="bAbI: words (en-10k has about 160)")
  parser.add_argument("--steps", type=int, default=10,
                      help="timed steps per member")
  parser.add_argument("--batch-size", type=int, default=None)
  parser.add_argument("--hidden-size", type=int, default=None)
  parser.add_argument("--memory-size", type=int, default=None)
  parser.add_argument("--word-size", type=int, default=None)
  parser.add_argument("--members-per-step", type=int, default=None,
                      help="members stepped at once (default: the trainer's "
                      "choice, sweep.auto_members_per_step; 0: all)")
  parser.add_argument("--rounds", type=int, default=3,
                      help="alternating timed rounds per way (median)")
  parser.add_argument("--json", default=None, help="write the rows here")
  args = parser.parse_args(argv)
  fields = {f: getattr(args, f) for f in ("hidden_size", "memory_size",
                                          "word_size")
            if getattr(args, f) is not None}
  if args.task == "babi":
    args.preset = args.preset or "dnc1"
    args.members = args.members or "1,4"
    task, model, base, settings = babi_parts(args.preset, fields,
                                             args.length, args.vocab_size)
  else:
    args.preset = args.preset or "default"
    args.members = args.members or "1,4,8,20"
    settings = tasks.preset(args.task, args.preset)
    settings["model"].update(fields)
    task = bit.TASKS[args.task](**settings["task"])
    model = unrolled_dnc(DNCConfig(output_size=task.output_size,
                                   input_size=task.input_size,
                                   **settings["model"]))
    base = OptimizerConfig(**settings["optimizer"])
  batch_size = args.batch_size or settings["loop"]["batch_size"]
  per_step = (sweep.auto_members_per_step(settings["model"])
              if args.members_per_step is None
              else (args.members_per_step or None))
  print(f"{args.task}/{args.preset}: model {settings['model']}, batch "
        f"{batch_size}, T {task.max_time}, {args.steps} timed steps per "
        f"member, backend {jax.default_backend()}, members per step "
        f"{per_step or 'all'}", flush=True)
  rows = []
  for count in [int(s) for s in args.members.split(",")]:
    rows.append(measure(task, model, base, count, args.steps, batch_size,
                        args.rounds, per_step))
    print(f"S={count}: speed-up {rows[-1]['speedup']:.2f}x", flush=True)
  print(table(rows))
  if args.json:
    with open(args.json, "w") as f:
      json.dump(rows, f, indent=2)


if __name__ == "__main__":
  main()
