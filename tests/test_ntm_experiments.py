"""The NTM in the experiments: presets, the trainer, resume, bAbI, tables."""

import dataclasses
import json
import pathlib
import shutil

import jax
import numpy as np
import pytest

from dnc_jax.ntm import NTMConfig
from experiments import babi_eval, cli, copy_comparison, tasks
from experiments.checkpoints import (Checkpointer, CheckpointError,
                                     describe_differences)
from experiments.loop import OptimizerConfig, load_params
from experiments.models import (babi_model, config_from_record, model_config,
                                sequence_model)
from experiments.plot import load_run
from experiments.tasks import babi, bit

NTM_PRESETS = [("copy", "ntm"), ("copy", "paper_ntm"), ("repeat_copy", "ntm"),
               ("dynamic_allocation_copy", "ntm"), ("babi", "ntm")]


def tiny_copy(**loop):
  """A copy run of an NTM small enough for CI."""
  settings = tasks.preset("copy", "ntm")
  settings["task"].update(num_bits=3, min_length=1, max_length=2)
  settings["model"].update(hidden_size=8, memory_size=4, word_size=4)
  settings["optimizer"].update(learning_rate=1e-2)
  settings["loop"].update(steps=6, batch_size=4, log_every=1, eval_every=3,
                          checkpoint_every=3)
  settings["loop"].update(loop)
  settings["eval_batch_size"] = 8
  return settings


def run(settings, out, **kw):
  return cli.run(settings, "copy", out, progress=False, **kw)


def params_of(out, settings):
  task = bit.Copy(**settings["task"])
  config = model_config("ntm", settings["model"], task.input_size,
                        task.output_size)
  model = sequence_model("ntm", config)
  params, _, _ = load_params(pathlib.Path(out), model.init,
                             OptimizerConfig(**settings["optimizer"]),
                             task.sample(np.random.default_rng(0), 1).inputs)
  return params


def assert_trees_equal(a, b):
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
  out = tmp_path_factory.mktemp("ntm")
  return out, run(tiny_copy(), out)


@pytest.mark.parametrize("task,name", NTM_PRESETS)
def test_ntm_presets_validate(task, name):
  settings = tasks.preset(task, name)
  assert settings["kind"] == "ntm"
  if task == "babi":
    settings["task"]["data_dir"] = "."
  cli.validate_settings(task, settings)
  json.dumps(settings)  # Plain data.


def test_ntm_presets_match_their_sources():
  # bAbI: Extended Data Table 2's NTM column, the optimiser of dnc1.
  ntm, dnc1 = tasks.preset("babi", "ntm"), tasks.preset("babi", "dnc1")
  model = ntm["model"]
  assert (model["controller"], model["hidden_size"], model["memory_size"],
          model["word_size"], model["num_reads"]) == ("lstm", 256, 256, 64, 4)
  assert model["weighting_grad_clip"] == 10.0  # docs/ntm.md: NaN without.
  assert ntm["optimizer"] == dnc1["optimizer"]
  assert (ntm["optimizer"]["learning_rate"],
          ntm["optimizer"]["momentum"]) == (1e-4, 0.9)
  assert ntm["loop"] == dnc1["loop"] and ntm["task"] == dnc1["task"]
  # Bit tasks: the DNC preset's sizes, optimiser and loop with an NTM.
  for task, ntm_name, dnc_name in [
      ("copy", "ntm", "default"), ("copy", "paper_ntm", "paper_dense"),
      ("dynamic_allocation_copy", "ntm", "default"),
      ("repeat_copy", "ntm", "default")]:
    ntm, dnc = tasks.preset(task, ntm_name), tasks.preset(task, dnc_name)
    assert "kind" not in dnc
    for section in ("task", "optimizer", "loop"):
      assert ntm[section] == dnc[section], (task, section)
    for field in ("controller", "hidden_size", "memory_size", "word_size",
                  "num_reads", "num_writes", "clip_value"):
      assert ntm["model"][field] == dnc["model"][field], (task, field)
    assert ntm["model"]["shift_range"] == 1


def test_flags_reach_the_ntm_and_misplaced_ones_are_refused():
  parser, generated = cli.build_parser()
  args = parser.parse_args(["--task", "copy", "--preset", "ntm",
                            "--shift-range", "2", "--memory-size", "8"])
  settings = cli.settings_from_args(args, generated)
  cli.validate_settings("copy", settings)
  assert settings["kind"] == "ntm"
  assert (settings["model"]["shift_range"],
          settings["model"]["memory_size"]) == (2, 8)
  for argv, message in [
      (["--preset", "ntm", "--link-sparsity", "5"],
       "link_sparsity does not apply to model kind 'ntm'"),
      (["--shift-range", "2"], "shift_range does not apply to model kind "
       "'dnc'")]:
    settings = cli.settings_from_args(
        parser.parse_args(["--task", "copy", *argv]), generated)
    with pytest.raises(ValueError, match=message):
      cli.validate_settings("copy", settings)


def test_ntm_copy_trains_through_the_loop(uninterrupted):
  out, summary = uninterrupted
  assert summary["step"] == 6 and summary["stopped"] is None
  assert np.isfinite(summary["train"]["loss"])
  assert {"valid/perfect", "longer/perfect"} <= set(summary["eval"])
  params = params_of(out, tiny_copy())
  assert any(name.startswith("ntm/") for name in params)
  # The run record says what was trained, for resume and the tables.
  record = cli.saved_settings(out)
  assert record["settings"]["kind"] == "ntm"
  assert record["settings"]["model"]["shift_range"] == 1
  # dnc-plot draws DNC memories: it refuses an NTM run by name.
  with pytest.raises(CheckpointError, match="model kind 'ntm'"):
    load_run(out)


# slow: exact resume is the fault, Mini-SHRDLU and graph tests' (docs/testing.md).
@pytest.mark.slow
def test_ntm_resume_is_exact(uninterrupted, tmp_path):
  full_out, _ = uninterrupted
  settings = tiny_copy()
  saved = {"task_name": "copy", "preset": "ntm", "settings": settings}
  first = run(settings, tmp_path / "a", stop_after=4, save_settings=saved)
  assert first["step"] == 4 and first["stopped"] == "stop_after"
  # --resume --out: the kind comes back from settings.json ...
  parser, generated = cli.build_parser()
  args = parser.parse_args(["--out", str(tmp_path / "a"), "--resume"])
  task_name, _, resumed_settings, _ = cli._settings(args, generated)
  assert task_name == "copy" and resumed_settings["kind"] == "ntm"
  assert run(resumed_settings, tmp_path / "a", resume=True)["step"] == 6
  assert_trees_equal(params_of(tmp_path / "a", settings),
                     params_of(full_out, settings))
  # ... and, without settings.json, from the checkpoint's run record.
  shutil.copytree(tmp_path / "a", tmp_path / "b")
  (tmp_path / "b" / cli.SETTINGS_FILE).unlink()
  from_record = cli.saved_settings(tmp_path / "b")["settings"]
  assert from_record["kind"] == "ntm"
  assert from_record["model"] == settings["model"]
  cli.validate_settings("copy", from_record)
  # A DNC's settings cannot resume the NTM run: the records differ.
  checkpointer = Checkpointer(tmp_path / "a" / "checkpoints", create=False)
  record = checkpointer.read_record()["run"]
  checkpointer.close()
  dnc = dict(record, model=dict(record["model"], shift_range=None))
  del dnc["kind"]
  assert "kind: saved 'ntm', now '<absent>'" in describe_differences(
      record, dnc)


def test_copy_comparison_prints_the_ntm_row(uninterrupted, tmp_path,
                                           capsys):
  full_out, _ = uninterrupted
  shutil.copytree(full_out, tmp_path / "copy-ntm")
  assert copy_comparison.main(["--out", str(tmp_path), "--report-only"]) == 0
  printed = capsys.readouterr().out
  assert "| model |" in printed and "| NTM |" in printed
  assert "final (step)" in printed and "(6)" in printed
  saved = json.loads((tmp_path / "copy_comparison.json").read_text())
  assert set(saved) == {"ntm"} and saved["ntm"]["final_step"] == 6
  text = copy_comparison.table({
      "dense": dict(perfect_at={500: 0.5}, first_step_99=None,
                    final_step=500, final_perfect=0.5,
                    final_longer_perfect=0.0),
      "ntm": dict(perfect_at={"500": 0.25}, first_step_99=None,
                  final_step=500, final_perfect=0.25,
                  final_longer_perfect=0.0)})
  assert "| DNC, dense link | 0.50 | 0.50 (500) |" in text
  assert "| NTM | 0.25 | 0.25 (500) |" in text


STORIES = """\
1 Mary moved to the bathroom.
2 John went to the hallway.
3 Where is Mary? \tbathroom\t1
1 Sandra travelled to the office.
2 Where is Sandra? \toffice\t1
"""


# slow: test_babi_ntm_trains_and_eval_shows_the_papers_ntm steps the same
# model through the trainer (docs/testing.md).
@pytest.mark.slow
def test_babi_ntm_model_takes_a_step():
  vocab = 7
  config = model_config("ntm", dict(tasks.preset("babi", "ntm")["model"],
                                    hidden_size=8, memory_size=6,
                                    word_size=4, num_reads=2), vocab, vocab)
  assert isinstance(config, NTMConfig)
  model = babi_model("ntm", config, remat_chunk=3)
  apply = babi.one_hot_inputs(model.apply, vocab)
  init = babi.one_hot_inputs(model.init, vocab)
  rng = np.random.default_rng(0)
  ids = rng.integers(1, vocab, (7, 2)).astype(np.int32)
  batch = babi.BabiBatch(ids, rng.integers(1, vocab, (7, 2)).astype(np.int32),
                         (rng.random((7, 2)) < 0.3).astype(np.float32))
  params = init(jax.random.PRNGKey(0), ids)

  def loss(p):
    logits = apply(p, batch.inputs)
    return babi.BabiTask.loss(None, logits, batch), logits

  (value, logits), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(
      params)
  assert logits.shape == (7, 2, vocab)
  assert np.isfinite(float(value))
  assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))
  saved = json.loads(json.dumps(dataclasses.asdict(config)))
  assert config_from_record("ntm", saved) == config


def test_babi_ntm_trains_and_eval_shows_the_papers_ntm(tmp_path, capsys):
  data = tmp_path / "data"
  data.mkdir()
  (data / "qa1_single-supporting-fact_train.txt").write_text(STORIES * 5)
  (data / "qa1_single-supporting-fact_test.txt").write_text(STORIES)
  settings = tasks.preset("babi", "ntm")
  settings["task"].update(data_dir=str(data), eval_stories=0)
  settings["model"].update(hidden_size=8, memory_size=6, word_size=4,
                           num_reads=2)
  settings["loop"].update(steps=2, batch_size=2, log_every=1, eval_every=2,
                          checkpoint_every=2)
  out = tmp_path / "run"
  summary = cli.run_babi(settings, out, progress=False, preset="ntm")
  assert summary["step"] == 2 and "valid/mean_error" in summary["eval"]
  capsys.readouterr()
  assert babi_eval.main(["--checkpoint", str(out), "--data-dir", str(data),
                         "--split", "test"]) == 0
  printed = capsys.readouterr().out
  assert "paper DNC1 mean % | paper NTM mean % |" in printed
  assert "| 9.0 | - |" in printed
  assert "28.5 ± 2.9 (best run 20.1) |" in printed
  assert "17.3 ± 0.7 |" in printed
  assert json.loads((out / "babi-test.json").read_text())["kind"] == "ntm"


def test_dnc_table_has_no_ntm_column():
  table = babi.error_table({1: (1, 10)})
  assert "NTM" not in babi.markdown_table(table, "valid")
  assert "NTM" not in babi.markdown_table(table, "valid", "lstm")
