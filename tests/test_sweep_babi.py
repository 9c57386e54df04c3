"""bAbI sweeps: members in one program, each as a lone run; the S-member
table; closed-loop tasks refused with the reason.

The data are the small bAbI-format fixtures of ``tests/test_babi.py``, the
model a tiny DNC, 3 steps.
"""

import json
import pathlib
import re
import sys

import jax
import numpy as np
import pytest

from experiments import babi_eval, cli, distributed, graph_cli, sweep, tasks
from experiments.loop import OptimizerConfig, load_params

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from test_babi import TASK1, write_fixture  # noqa: E402  pylint: disable=g-import-not-at-top

SMALL = ["--hidden-size", "16", "--memory-size", "8", "--word-size", "8",
         "--num-reads", "2", "--batch-size", "2", "--no-progress",
         "--steps", "3", "--log-every", "1", "--eval-every", "0",
         "--checkpoint-every", "100", "--valid-fraction", "0.2",
         "--eval-stories", "0"]
SEEDS = [0, 1]


def _settings(data):
  settings = tasks.preset("babi", "dnc1")
  settings["task"].update(data_dir=str(data), valid_fraction=0.2,
                          eval_stories=0)
  settings["model"].update(hidden_size=16, memory_size=8, word_size=8,
                           num_reads=2)
  settings["loop"].update(steps=3, batch_size=2, log_every=1, eval_every=0,
                          checkpoint_every=100)
  return settings


def _flat(tree):
  return np.concatenate([np.asarray(x).ravel() for x in jax.tree.leaves(tree)])


def _members(run, settings):
  """Each member's parameters, the checkpoint's record and the run's parts
  of a sweep run folder."""
  parts = cli.babi_parts(settings, select=False)
  record = dict(parts.record, sweep={"seeds": SEEDS, "sweep": {}})
  inputs = parts.task.sample(np.random.default_rng(0), 2).inputs
  params, saved = sweep.load_members(run, parts.model.init, record, inputs)
  return params, saved, parts


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  """A 2-member sweep (dnc-babi-train --seeds 2) and the lone seed-0 run."""
  root = tmp_path_factory.mktemp("babi-sweep")
  data = write_fixture(root / "data", stories_per_task=5, test=True)
  common = ["--data-dir", str(data), *SMALL]
  assert cli.babi_main([*common, "--seeds", "2", "--out",
                        str(root / "sweep")]) == 0
  assert cli.babi_main([*common, "--out", str(root / "lone")]) == 0
  return root, data


def test_member_equals_the_lone_run_and_members_differ(runs):
  """Member 0 (seed 0 = --seed) trains and evaluates as ``dnc-babi-train
  --seed 0``; member 1 has other parameters and other stories."""
  root, data = runs
  settings = _settings(data)
  members, saved, parts = _members(root / "sweep", settings)
  assert saved["step"] == 3 and len(members) == 2
  inputs = parts.task.sample(np.random.default_rng(0), 2).inputs
  lone, _, _ = load_params(root / "lone", parts.model.init,
                           OptimizerConfig(**settings["optimizer"]), inputs)
  np.testing.assert_allclose(_flat(members[0]), _flat(lone), rtol=1e-5,
                             atol=1e-6)
  assert not np.allclose(_flat(members[0]), _flat(members[1]), atol=1e-4)
  summary = json.loads((root / "sweep" / "summary.json").read_text())
  lone_summary = json.loads((root / "lone" / "summary.json").read_text())
  assert [m["seed"] for m in summary["members"]] == SEEDS
  for key in ("valid/mean_error", "valid/task1", "valid/task8"):
    assert summary["members"][0]["eval"][key] == pytest.approx(
        lone_summary["eval"][key], abs=1e-9)
  np.testing.assert_allclose(summary["members"][0]["train"]["loss"],
                             lone_summary["train"]["loss"], rtol=1e-5)
  assert summary["eval"]["valid/mean_error"]["n"] == 2
  lines = [json.loads(l) for l in
           (root / "sweep" / "metrics.jsonl").read_text().splitlines()]
  assert {(l["member"], l["step"]) for l in lines
          if l["kind"] == "train"} == {(m, s) for m in (0, 1)
                                       for s in (1, 2, 3)}


def test_members_draw_their_own_stories_in_one_bucket(tmp_path):
  """Every step: member 0's batch is a lone run's, the other member's has
  its shape (the bucket member 0 drew) but its own stories."""
  long_story = "".join(f"{i} Mary moved to the bathroom.\n"  # 53 words.
                       for i in range(1, 9))
  long_story += "9 Where is Mary? \tbathroom\t8\n"
  data = write_fixture(tmp_path, stories_per_task=4)
  with (data / "qa1_single-supporting-fact_train.txt").open("a") as f:
    f.write((long_story + TASK1) * 4)
  parts = cli.babi_parts(_settings(data), select=False)
  members = sweep.make_members(parts.optimizer, SEEDS, {})
  sample = sweep.MemberSampler(parts.task, members, 2,
                               distributed.make_mesh(2, 2, 1))
  lengths, differs = set(), 0
  for step in range(12):
    batch = jax.device_get(sample(step))
    lone = parts.task.sample(np.random.default_rng([0, step]), 2)
    np.testing.assert_array_equal(batch.inputs[0], lone.inputs)
    lengths.add(batch.inputs.shape[1])
    differs += not np.array_equal(batch.inputs[0], batch.inputs[1])
  assert lengths == {32, 64}  # Both buckets, one shape per step.
  assert differs >= 6


def test_resume_equals_uninterrupted(runs, tmp_path):
  root, data = runs
  settings = _settings(data)
  spec = {"seeds": SEEDS, "sweep": {}}
  first = sweep.run_babi_sweep(settings, tmp_path / "cut", spec,
                               progress=False, stop_after=1, evaluate=False,
                               preset="dnc1")
  assert first["stopped"] == "stop_after" and first["step"] == 1
  sweep.run_babi_sweep(settings, tmp_path / "cut", spec, resume=True,
                       progress=False, evaluate=False, preset="dnc1")
  whole, _, _ = _members(root / "sweep", settings)
  cut, saved, _ = _members(tmp_path / "cut", settings)
  assert saved["step"] == 3
  for a, b in zip(whole, cut):
    np.testing.assert_array_equal(_flat(a), _flat(b))


def test_eval_commands_print_mean_and_sd_over_members(runs, capsys):
  root, data = runs
  assert sweep.eval_main(["--run", str(root / "sweep")]) == 0
  printed = capsys.readouterr().out
  assert "mean ± s.d., 2 members" in printed
  assert "| 1 |" in printed and "| 8 |" in printed
  # Our cells carry the spread over members (the paper's cells always do).
  assert re.search(r"\| \*\*mean\*\* \| \*\*[\d.]+ ± [\d.]+\*\* \|", printed)
  assert "failed tasks per member: 0: " in printed and ", 1: " in printed
  assert babi_eval.main(["--checkpoint", str(root / "sweep"), "--data-dir",
                         str(data), "--split", "test"]) == 0
  printed = capsys.readouterr().out
  assert "mean ± s.d., 2 members" in printed and "| 1 |" in printed
  saved = json.loads((root / "sweep" / "babi-test.json").read_text())
  assert len(saved["members"]) == 2 and "per_task_sd" in saved
  assert babi_eval.main(["--checkpoint", str(root / "sweep"), "--data-dir",
                         str(data), "--split", "test", "--member", "1",
                         "--out", str(root / "m1")]) == 0
  printed = capsys.readouterr().out
  assert "member 1" in printed and "s.d." not in printed
  assert re.search(r"\| \*\*mean\*\* \| \*\*[\d.]+\*\* \|", printed)


def test_members_table_is_mean_and_sd():
  tables = [{"per_task": {1: 0.0, 2: 10.0}, "questions": {1: 5, 2: 5},
             "mean_error": 5.0, "failed_tasks": 1},
            {"per_task": {1: 2.0, 2: 30.0}, "questions": {1: 5, 2: 5},
             "mean_error": 16.0, "failed_tasks": 1}]
  from experiments.tasks import babi
  table = babi.members_table(tables)
  assert table["per_task"] == {1: 1.0, 2: 20.0}
  assert table["per_task_sd"][2] == pytest.approx(np.std([10, 30], ddof=1))
  assert table["best_member"] == 0 and table["failed_tasks_sd"] == 0.0
  markdown = babi.markdown_table(table, "valid")
  assert "| 2 | 20.0 ± 14.1 | 10.0 | 5 |" in markdown


@pytest.mark.parametrize("task", ["shrdlu", "traversal", "inference",
                                  "shortest_path"])
def test_closed_loop_tasks_are_refused_naming_the_task(task, tmp_path,
                                                       capsys):
  with pytest.raises(ValueError, match=f"task {task!r}.*curricula diverge"):
    sweep.check_task(task)
  with pytest.raises(SystemExit):
    graph_cli.train_main(["--task", task, "--seeds", "2", "--out",
                          str(tmp_path / "r")])
  assert f"task {task!r} is not supported" in capsys.readouterr().err
  assert not (tmp_path / "r").exists()


def test_a_refused_sweep_resume_keeps_its_settings_and_vocabulary(
    runs, tmp_path, capsys):
  """--tasks 1 draws another vocabulary; the checkpoint refuses it, and the
  run folder keeps the settings and words its checkpoints were built on."""
  import shutil
  root, data = runs
  run = tmp_path / "sweep"
  shutil.copytree(root / "sweep", run)
  before = {name: (run / name).read_text()
            for name in ("settings.json", "vocab.json")}
  with pytest.raises(SystemExit) as exit_info:
    cli.babi_main(["--data-dir", str(data), *SMALL, "--tasks", "1",
                   "--steps", "4", "--out", str(run), "--resume"])
  assert exit_info.value.code == 2
  assert "belongs to a different run" in capsys.readouterr().err
  for name, text in before.items():
    assert (run / name).read_text() == text, name
