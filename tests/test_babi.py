"""bAbI: reading, splits, batching, masks, evaluation, training, eval table.

The fixtures are small bAbI-format files written here, not the real data.
"""

import json
import os
import pathlib
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import babi_data
from experiments.tasks import babi as babi_task
from experiments.babi_data import BabiFormatError, Vocabulary

ROOT = pathlib.Path(__file__).resolve().parents[1]

TASK1 = """\
1 Mary moved to the bathroom.
2 John went to the hallway.
3 Where is Mary? \tbathroom\t1
4 Daniel went back to the hallway.
5 Where is Daniel? \thallway\t4
1 Sandra travelled to the office.
2 Where is Sandra? \toffice\t1
"""
TASK8 = """\
1 Mary got the milk there.
2 Mary took the apple there.
3 What is Mary carrying?\tmilk,apple\t1 2
1 John picked up the football there.
2 What is John carrying?\tfootball\t1
"""


def write_fixture(folder: pathlib.Path, stories_per_task: int = 1,
                  test: bool = False) -> pathlib.Path:
  folder.mkdir(parents=True, exist_ok=True)
  (folder / "qa1_single-supporting-fact_train.txt").write_text(
      TASK1 * stories_per_task)
  (folder / "qa8_lists-sets_train.txt").write_text(TASK8 * stories_per_task)
  if test:
    (folder / "qa1_single-supporting-fact_test.txt").write_text(TASK1)
  return folder


def test_parse_follows_the_papers_preprocessing(tmp_path):
  folder = write_fixture(tmp_path)
  stories = babi_data.parse_file(folder / "qa1_single-supporting-fact_train.txt")
  assert len(stories) == 2
  first = stories[0]
  assert first.task == 1
  assert first.tokens == (
      "mary", "moved", "to", "the", "bathroom", ".",
      "john", "went", "to", "the", "hallway", ".",
      "where", "is", "mary", "?", "-",
      "daniel", "went", "back", "to", "the", "hallway", ".",
      "where", "is", "daniel", "?", "-")
  assert first.answers == ("bathroom", "hallway")
  assert first.questions == (0, 1)
  lists = babi_data.parse_file(folder / "qa8_lists-sets_train.txt")
  # Two answer words: two '-', both belonging to the first question.
  assert lists[0].tokens[-3:] == ("?", "-", "-")
  assert lists[0].answers == ("milk", "apple")
  assert lists[0].questions == (0, 0)
  assert lists[0].task == 8


@pytest.mark.parametrize("text,message", [
    ("Mary moved.\n", "line 1: a line must start with its number"),
    ("1 Mary moved.\n3 John went.\n", "line 2: line number 3 follows 1"),
    ("1 Mary moved.\n2 Where is Mary?\n", "line 2: a question needs"),
    ("1 Where is Mary?\t\t1\n", "line 1: a question needs a tab and an"),
])
def test_malformed_files_name_file_and_line(tmp_path, text, message):
  path = tmp_path / "qa1_broken_train.txt"
  path.write_text(text)
  with pytest.raises(BabiFormatError, match=message) as info:
    babi_data.parse_file(path)
  assert str(path) in str(info.value)


def test_vocabulary_round_trip_and_unknown_words(tmp_path):
  stories = babi_data.parse_file(
      write_fixture(tmp_path) / "qa8_lists-sets_train.txt")
  vocab = Vocabulary.build(stories)
  assert vocab.words[:4] == ("<pad>", ".", "?", "-")
  assert {"milk", "apple", "football", "carrying"} <= set(vocab.words)
  vocab.save(tmp_path / "vocab.json")
  assert Vocabulary.load(tmp_path / "vocab.json") == vocab
  with pytest.raises(KeyError, match="'zebra' .*not in the vocabulary"):
    vocab.encode(["mary", "zebra"])


def test_splits_move_a_fraction_of_each_task(tmp_path):
  folder = write_fixture(tmp_path, stories_per_task=10, test=True)
  splits = babi_data.load_splits(folder, valid_fraction=0.1, seed=3)
  assert set(splits) == {"train", "valid", "test"}
  for task in (1, 8):
    train = [s for s in splits["train"] if s.task == task]
    valid = [s for s in splits["valid"] if s.task == task]
    assert (len(train), len(valid)) == (18, 2)
  again = babi_data.load_splits(folder, valid_fraction=0.1, seed=3)
  assert again["valid"] == splits["valid"]
  other = babi_data.load_splits(folder, valid_fraction=0.1, seed=4)
  assert other["valid"] != splits["valid"]
  assert [s.task for s in splits["test"]] == [1, 1]
  with pytest.raises(FileNotFoundError, match="no training file for tasks"):
    babi_data.load_splits(folder, tasks=[2])


def make_task(tmp_path):
  folder = write_fixture(tmp_path, stories_per_task=3)
  stories = babi_data.load_splits(folder, 0.0, 0)["train"]
  vocab = Vocabulary.build(stories)
  return babi_task.BabiTask(stories, vocab, buckets=(8, 16, 32)), vocab


def test_batches_use_one_bucket_with_masks_at_the_answers(tmp_path):
  task, vocab = make_task(tmp_path)
  dash = vocab.index["-"]
  seen = set()
  for seed in range(20):
    batch = task.sample(np.random.default_rng(seed), 4)
    length = batch.inputs.shape[0]
    seen.add(length)
    assert length in (16, 32)
    assert batch.inputs.dtype == np.int32 and batch.mask.dtype == np.float32
    np.testing.assert_array_equal(batch.mask, batch.inputs == dash)
    assert np.all(batch.targets[batch.mask == 0] == 0)
    assert np.all(batch.targets[batch.mask == 1] > 3)  # words, not symbols
  assert seen == {16, 32}


def test_loss_is_cross_entropy_at_the_answer_steps(tmp_path):
  task, vocab = make_task(tmp_path)
  batch = task.sample(np.random.default_rng(0), 3)
  logits = np.random.default_rng(1).normal(size=batch.inputs.shape
                                           + (len(vocab),))
  log_p = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  picked = np.take_along_axis(log_p, batch.targets[..., None], -1)[..., 0]
  want = -(picked * batch.mask).sum() / 3
  np.testing.assert_allclose(task.loss(jnp.asarray(logits), batch), want,
                             rtol=1e-6)


def test_evaluation_counts_questions_not_words(tmp_path):
  folder = write_fixture(tmp_path)
  stories = babi_data.load_splits(folder, 0.0, 0)["train"]
  vocab = Vocabulary.build(stories)
  encoded = {id(s): babi_task.encode(s, vocab) for s in stories}

  def oracle(ids, wrong_word=None):
    # Predicts every answer right, except `wrong_word` wherever it is due.
    out = np.zeros_like(ids)
    for b in range(ids.shape[1]):
      for story in stories:
        e = encoded[id(story)]
        if np.array_equal(ids[:len(e.inputs), b], e.inputs):
          out[:len(e.inputs), b] = e.targets
          if wrong_word is not None:
            out[:len(e.inputs), b][e.targets == vocab.index[wrong_word]] = 1
    return out

  perfect = babi_task.evaluate(oracle, stories, vocab, batch_size=2,
                               buckets=(16, 32))
  assert perfect == {1: (0, 3), 8: (0, 2)}
  # "apple" is one of two answer words of one question: one question wrong.
  one_wrong = babi_task.evaluate(lambda ids: oracle(ids, "apple"), stories,
                                 vocab, batch_size=2, buckets=(16, 32))
  assert one_wrong == {1: (0, 3), 8: (1, 2)}
  table = babi_task.error_table(one_wrong)
  assert table["per_task"] == {1: 0.0, 8: 50.0}
  assert table["mean_error"] == 25.0 and table["failed_tasks"] == 1
  markdown = babi_task.markdown_table(table, "valid")
  assert "| 8 | 50.0 | 2 | 5.5 |" in markdown
  assert "| **mean** | **25.0** |" in markdown
  # Extended Data Table 1's DNC1 column: 20 runs' mean +- s.d., and its best
  # run (4.3 %, 2 failed; the 3.8 % of the main text is a DNC2 network).
  assert "| 16.7 ± 7.6 (best run 4.3) |" in markdown
  assert "| **failed (> 5%)** | **1** | | 11.2 ± 5.4 (best run 2) |" in markdown


def run_cli(module, *args, env=None):
  result = subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=900,
                          env=env)
  assert result.returncode == 0, result.stdout + result.stderr
  return result.stdout


SMALL = ["--hidden-size", "16", "--memory-size", "8", "--word-size", "8",
         "--num-reads", "2", "--batch-size", "2", "--no-progress"]


def test_train_then_eval_command_lines(tmp_path):
  data = write_fixture(tmp_path / "data", stories_per_task=5, test=True)
  out = tmp_path / "run"
  run_cli("experiments.babi_train", "--data-dir", str(data), "--out",
          str(out), "--steps", "4", "--eval-every", "2",
          "--checkpoint-every", "2", "--log-every", "1", *SMALL)
  assert (out / "vocab.json").exists()
  evals = [json.loads(l) for l in (out / "metrics.jsonl").read_text().split(
      "\n") if '"eval"' in l]
  assert [e["step"] for e in evals] == [2, 4]
  assert {"valid/mean_error", "valid/task1", "valid/task8"} <= set(evals[0])
  printed = run_cli("experiments.babi_eval", "--checkpoint", str(out),
                    "--data-dir", str(data), "--split", "test")
  assert "| 1 |" in printed and "paper DNC1 mean %" in printed
  saved = json.loads((out / "babi-test.json").read_text())
  assert saved["split"] == "test" and set(saved["per_task"]) == {"1"}
  assert (out / "babi-test.md").read_text().startswith(str(out))


def test_bad_data_dir_gives_a_clear_error(tmp_path):
  result = subprocess.run(
      [sys.executable, "-m", "experiments.babi_train", "--data-dir",
       str(tmp_path / "missing")], cwd=ROOT, capture_output=True, text=True,
      timeout=300)
  assert result.returncode == 2
  assert "does not exist" in result.stderr


DATA_PARALLEL_CHECK = textwrap.dedent("""
    import jax, numpy as np
    from dnc_jax import DNCConfig
    from experiments import babi_data
    from experiments.tasks import babi as babi_task
    from experiments.loop import (OptimizerConfig, data_mesh,
                                  data_parallel_step, initial_train_state,
                                  make_optimizer, make_train_step)
    from experiments.models import babi_model
    assert jax.local_device_count() == 4, jax.devices()
    stories = babi_data.load_splits(DATA, 0.0, 0)["train"]
    vocab = babi_data.Vocabulary.build(stories)
    # One bucket: one batch shape, so each step compiles once.
    task = babi_task.BabiTask(stories, vocab, buckets=(64,))
    config = DNCConfig(output_size=len(vocab), hidden_size=16, memory_size=8,
                       word_size=8, num_reads=2)
    model = babi_model("dnc", config)
    apply = babi_task.one_hot_inputs(model.apply, len(vocab))
    init = babi_task.one_hot_inputs(model.init, len(vocab))
    optimizer_config = OptimizerConfig(learning_rate=1e-2, momentum=0.9)
    optimizer = make_optimizer(optimizer_config)
    batch = task.sample(np.random.default_rng(0), 8)
    state = initial_train_state(init, optimizer_config, batch.inputs, 0)
    single = jax.jit(make_train_step(apply, task, optimizer))
    parallel = jax.jit(data_parallel_step(
        make_train_step(apply, task, optimizer, axis_name="data"),
        data_mesh(8)))
    a, b = state, state
    for step in range(3):
      batch = task.sample(np.random.default_rng(step), 8)
      a, metrics_a = single(a, batch)
      b, metrics_b = parallel(b, batch)
    leaves_a, leaves_b = jax.tree.leaves(a), jax.tree.leaves(b)
    worst = max(float(np.max(np.abs(x - y))) for x, y in zip(leaves_a,
                                                             leaves_b))
    moved = max(float(np.max(np.abs(x - y))) for x, y in zip(
        leaves_a, jax.tree.leaves(state)))
    np.testing.assert_allclose(float(metrics_a["loss"]),
                               float(metrics_b["loss"]), rtol=1e-5)
    print("worst", worst, "moved", moved)
    assert moved > 1e-3 and worst < 1e-5
""")


def test_data_parallel_step_equals_single_device_step(tmp_path):
  data = write_fixture(tmp_path, stories_per_task=4)
  env = dict(os.environ,
             XLA_FLAGS="--xla_force_host_platform_device_count=4")
  result = subprocess.run(
      [sys.executable, "-c", f"DATA = {str(data)!r}\n" + DATA_PARALLEL_CHECK],
      cwd=ROOT, capture_output=True, text=True, timeout=900, env=env)
  assert result.returncode == 0, result.stdout + result.stderr
  assert "worst" in result.stdout


def test_eval_shows_other_runs_tables_beside(tmp_path, capsys):
  # pylint: disable-next=g-import-not-at-top
  from experiments import babi_eval
  dnc = {"run": "runs/dnc1", "kind": "dnc", "parameters": "best (step 9)",
         "split": "valid", "per_task": {"1": 40.0, "2": 10.0},
         "mean_error": 25.0, "failed_tasks": 2}
  ntm = dict(dnc, run="runs/ntm", kind="ntm", per_task={"1": 55.5},
             mean_error=55.5, failed_tasks=1)
  path = tmp_path / "babi-valid.json"
  path.write_text(json.dumps(dnc))
  (read,) = babi_eval.read_beside(str(path), "valid")
  table = babi_eval.beside_table([ntm, read], "valid").splitlines()
  assert "ntm: runs/ntm" in table[0] and "dnc: runs/dnc1" in table[0]
  assert table[0].index("ntm:") < table[0].index("dnc:")
  assert table[2] == "| 1 | 55.5 | 40.0 | 9.0 |"
  assert table[3].startswith("| 2 | - | 10.0 |")
  assert table[4].startswith("| **mean** | **55.5** | **25.0** |")
  assert table[5].startswith("| **failed (> 5%)** | **1** | **2** |")
  with pytest.raises(ValueError, match="'valid' split, not 'test'"):
    babi_eval.read_beside(str(path), "test")
  (tmp_path / "other.json").write_text("{}")
  for bad, says in [(tmp_path / "none.json", "cannot read"),
                    (tmp_path / "other.json", "not a dnc-babi-eval table")]:
    with pytest.raises(SystemExit):
      babi_eval.main(["--checkpoint", str(tmp_path), "--data-dir",
                      str(tmp_path), "--beside", str(bad)])
    assert says in capsys.readouterr().err
