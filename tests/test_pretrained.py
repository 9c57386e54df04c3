"""``python -m experiments.pretrained``: the notebooks' model file."""

import pathlib

import numpy as np
import pytest

from experiments import pretrained

ROOT = pathlib.Path(__file__).resolve().parents[1]
COMMITTED = ROOT / "notebooks" / "pretrained" / "dynamic_allocation_copy.npz"
EVALUATION_FIELDS = {"batch_size", "seed", "perfect", "bit_errors",
                     "longer_perfect", "longer_bit_errors"}


def _keys(path):
  with np.load(path, allow_pickle=False) as data:
    return set(data.files)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
  """A model trained for two steps by the command, and its run folder."""
  folder = tmp_path_factory.mktemp("pretrained")
  out = folder / "tiny.npz"
  assert pretrained.main([
      "--task", "dynamic_allocation_copy", "--steps", "2",
      "--eval-batch-size", "4", "--run", str(folder / "run"),
      "--out", str(out), "--no-progress"]) == 0
  return out, folder / "run"


def test_command_writes_a_loadable_file(tiny):
  out, _ = tiny
  config, params, task = pretrained.load(out)
  meta = pretrained.load_meta(out)
  assert task == {"name": "dynamic_allocation_copy", "num_bits": 6,
                  "num_sequences": 10, "min_length": 5, "max_length": 5}
  assert config.memory_size == 10 and config.controller == "feedforward"
  assert set(meta["evaluation"]) == EVALUATION_FIELDS
  assert meta["evaluation"]["batch_size"] == 4
  assert 0 <= meta["evaluation"]["perfect"] <= 1
  assert meta["source"]["step"] == 2
  # Saving what was loaded gives the same file contents back.
  again = out.with_name("again.npz")
  pretrained.save(again, config, params, task, meta["evaluation"],
                  meta["source"])
  config2, params2, task2 = pretrained.load(again)
  assert (config2, task2) == (config, task)
  for module, values in params.items():
    for name, value in values.items():
      np.testing.assert_array_equal(params2[module][name], value)
  assert pretrained.load_meta(again) == meta


def test_evaluation_is_reproducible(tiny):
  out, _ = tiny
  config, params, task = pretrained.load(out)
  stored = pretrained.load_meta(out)["evaluation"]
  assert pretrained.evaluate(config, params, pretrained.make_task(task),
                             stored["batch_size"], stored["seed"]) == stored


def test_export_of_a_finished_run(tiny, tmp_path):
  out, run = tiny
  exported = tmp_path / "exported.npz"
  assert pretrained.main(["--from-run", str(run), "--eval-batch-size", "4",
                          "--out", str(exported)]) == 0
  _, params, _ = pretrained.load(out)
  _, params2, _ = pretrained.load(exported)
  for module, values in params.items():
    for name, value in values.items():
      np.testing.assert_array_equal(params2[module][name], value)


def test_committed_file_has_the_commands_format(tiny):
  out, _ = tiny
  assert _keys(COMMITTED) == _keys(out)
  committed, fresh = pretrained.load_meta(COMMITTED), pretrained.load_meta(out)
  assert set(committed) >= {"config", "task", "evaluation", "source"}
  assert set(committed) == set(fresh)
  assert set(committed["config"]) == set(fresh["config"])
  assert set(committed["task"]) == set(fresh["task"])
  assert set(committed["evaluation"]) == EVALUATION_FIELDS


def test_committed_model_reaches_its_stored_figures():
  """The committed model copies all 100 seeded episodes (10 and 20 long)."""
  config, params, task = pretrained.load(COMMITTED)
  stored = pretrained.load_meta(COMMITTED)["evaluation"]
  assert (stored["batch_size"], stored["seed"]) == (100, 0)
  measured = pretrained.evaluate(config, params, pretrained.make_task(task))
  assert measured == stored
  assert measured["perfect"] == 1.0 and measured["bit_errors"] == 0.0


def test_not_a_pretrained_file(tmp_path):
  path = tmp_path / "plain.npz"
  np.savez(path, x=np.zeros(2))
  with pytest.raises(ValueError, match="not a dnc_jax pretrained file"):
    pretrained.load(path)
