"""The graph tasks in the one trainer: commands end to end, exact resume,
evaluation tables, pictures, memory resized at test time, bad input."""

import dataclasses
import inspect
import json

import jax
import numpy as np
import pytest

from experiments import graph_cli, graph_eval
from experiments.graphs import curriculum, encoding
from experiments.tasks import PRESETS, base, graph

# A tiny DNC and loop: a few steps of lesson 1 in seconds.
TINY = ["--preset", "cpu", "--hidden-size", "8", "--memory-size", "16",
        "--word-size", "4", "--num-reads", "1", "--batch-size", "2",
        "--log-every", "1", "--eval-every", "2", "--checkpoint-every", "2",
        "--eval-episodes", "4", "--eval-batch-size", "4", "--no-progress"]


def _tiny_settings(task: str):
  parser, generated = graph_cli.build_parser()
  args = parser.parse_args(["--task", task] + TINY)
  _, _, settings, _ = graph_cli._settings(args, generated)
  return settings


def _evals(run_dir):
  return [m for m in graph_eval.read_metrics(run_dir) if m["kind"] == "eval"]


def test_registry_holds_the_graph_tasks_and_presets():
  for task in graph.TASKS:
    assert {"paper", "cpu", "lstm", "cpu_lstm"} <= set(PRESETS[task])
    assert PRESETS[task]["lstm"]["kind"] == "lstm"
  paper = PRESETS["traversal"]["paper"]["model"]
  assert paper["controller"] == "deep_lstm" and paper["num_layers"] == 3
  # The Underground test needs more slots than its 192 triples.
  assert PRESETS["traversal"]["paper"]["model"]["memory_size"] >= 256
  assert PRESETS["inference"]["paper"]["model"]["memory_size"] >= 120


def test_curriculum_task_conforms_to_the_protocol():
  task = graph.make_task("traversal")
  assert isinstance(task, base.Task) and isinstance(task, base.TaskBase)
  for name in ("sample", "loss", "metrics", "evaluate", "curriculum_state",
               "restore_curriculum", "after_evaluation", "make_train_step"):
    ours = list(inspect.signature(getattr(task, name)).parameters)
    theirs = list(inspect.signature(getattr(base.Task, name)).parameters)
    assert ours == theirs[1:], name  # theirs has self.


def test_memory_size_is_not_a_parameter_shape():
  small = graph.make_model("dnc", graph.model_config(
      "dnc", dict(hidden_size=8, memory_size=8, word_size=4, num_reads=1)))
  large = graph.make_model("dnc", graph.model_config(
      "dnc", dict(hidden_size=8, memory_size=64, word_size=4, num_reads=1)))
  x = np.zeros((3, 1, 92), np.float32)
  shapes = [jax.tree.map(np.shape, m.init(jax.random.PRNGKey(0), x))
            for m in (small, large)]
  assert shapes[0] == shapes[1]


def test_train_command_end_to_end_with_lesson_and_accuracy(tmp_path):
  out = tmp_path / "run"
  code = graph_cli.train_main(["--task", "traversal", "--steps", "4",
                               "--out", str(out)] + TINY)
  assert code == 0
  assert json.loads((out / "summary.json").read_text())["step"] == 4
  evals = _evals(out)
  assert [e["step"] for e in evals] == [2, 4]
  for e in evals:
    assert 0 <= e["valid/accuracy"] <= 1 and e["valid/lesson"] == 1
    assert e["curriculum"]["lesson"] == 1
  assert evals[0]["valid/examples_seen"] == 4  # 2 steps of 2.
  assert sorted(p.name for p in (out / "checkpoints").iterdir()
                if p.name.isdigit()) == ["2", "4"]
  saved = json.loads((out / "settings.json").read_text())
  assert saved["task_name"] == "traversal" and saved["preset"] == "cpu"


def test_resume_is_exact_with_the_curriculum(tmp_path, monkeypatch):
  # Every evaluation passes, so the lesson (and the batch length, and the
  # mixing of earlier lessons) changes during the run.
  easy = dataclasses.replace(curriculum.SCHEDULES["traversal"],
                             threshold=0.0)
  monkeypatch.setitem(curriculum.SCHEDULES, "traversal", easy)
  settings = _tiny_settings("traversal")
  settings["loop"]["steps"] = 6
  whole = graph_cli.run(json.loads(json.dumps(settings)), "traversal",
                        tmp_path / "whole", progress=False)
  first = graph_cli.run(json.loads(json.dumps(settings)), "traversal",
                        tmp_path / "parts", progress=False, stop_after=3)
  assert first["stopped"] == "stop_after" and first["step"] == 3
  second = graph_cli.run(json.loads(json.dumps(settings)), "traversal",
                         tmp_path / "parts", progress=False, resume=True)
  assert second["step"] == whole["step"] == 6
  a = graph_cli.load_run(tmp_path / "whole")
  b = graph_cli.load_run(tmp_path / "parts")
  assert a.curriculum == b.curriculum
  # Passed at steps 2 and 4; the final evaluation (step 6) comes after
  # the last checkpoint.
  assert a.curriculum["lesson"] == 3
  assert a.curriculum["examples_seen"] == 12
  for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params)):
    np.testing.assert_array_equal(x, y)
  steps = lambda run: [(e["step"], e["valid/lesson"]) for e in _evals(run)]
  assert steps(tmp_path / "parts") == steps(tmp_path / "whole")


def test_dnc_train_routes_graph_tasks_and_runs(tmp_path):
  out = tmp_path / "run"
  assert graph_cli.is_graph_run(["--task", "inference"])
  assert not graph_cli.is_graph_run(["--task", "copy"])
  assert not graph_cli.is_graph_run(["--out", str(out), "--resume"])
  assert graph_cli.train_main(["--task=inference", "--steps", "2",
                               "--out", str(out)] + TINY) == 0
  assert graph_cli.is_graph_run(["--out", str(out), "--resume"])
  # Resume takes the run's settings; a longer run continues it.
  assert graph_cli.train_main(["--out", str(out), "--resume", "--steps",
                               "4", "--no-progress"]) == 0
  assert _evals(out)[-1]["step"] == 4


def test_a_refused_resume_keeps_the_settings_and_allow_change_is_logged(
    tmp_path, capsys):
  out = tmp_path / "run"
  assert graph_cli.main(["--task", "traversal", "--steps", "2", "--out",
                         str(out)] + TINY) == 0
  before = (out / "settings.json").read_text()
  rate = json.loads(before)["settings"]["optimizer"]["learning_rate"]
  assert rate != 0.5
  capsys.readouterr()
  # The checkpoint refuses a new learning rate unless it is allowed; the
  # refused value must not stay in settings.json for the next --resume.
  with pytest.raises(SystemExit) as exit_info:
    graph_cli.main(["--out", str(out), "--resume", "--steps", "4",
                    "--learning-rate", "0.5", "--no-progress"])
  assert exit_info.value.code == 2
  assert "learning_rate" in capsys.readouterr().err
  assert (out / "settings.json").read_text() == before
  assert graph_cli.main(["--out", str(out), "--resume", "--steps", "4",
                         "--allow-change", "learning_rate",
                         "--learning-rate", "0.5", "--no-progress"]) == 0
  (change,) = [m for m in graph_eval.read_metrics(out)
               if m["kind"] == "change"]
  assert change["step"] == 2 and change["changed"] == [
      f"optimizer.learning_rate: saved {rate!r}, now 0.5"]
  saved = json.loads((out / "settings.json").read_text())
  assert saved["settings"]["optimizer"]["learning_rate"] == 0.5
  with pytest.raises(SystemExit):
    graph_cli.main(["--task", "traversal", "--out", str(tmp_path / "new"),
                    "--allow-change", "learning_rate"] + TINY)
  assert "--allow-change applies to --resume" in capsys.readouterr().err
  assert not (tmp_path / "new").exists()


def test_eval_command_writes_its_table(tmp_path, capsys):
  out = tmp_path / "run"
  graph_cli.main(["--task", "inference", "--steps", "2", "--out", str(out)]
                 + TINY)
  capsys.readouterr()
  assert graph_eval.eval_main(["--checkpoint", str(out), "--test",
                               "family"]) == 0
  printed = capsys.readouterr().out
  assert "81.8" in printed and "| family | inference |" in printed
  table = json.loads((out / "graph-family.json").read_text())
  (row,) = table["rows"]
  assert row["count"] == 96 and row["triples"] == 120
  assert table["memory_size"] == 128  # Raised past the tree's triples.
  assert 0 <= row["ours"] <= 100
  assert (out / "graph-family.md").read_text().startswith("inference")
  assert graph_eval.eval_main(["--checkpoint", str(out), "--test",
                               "lessons", "--episodes", "4"]) == 0
  lessons = json.loads((out / "graph-lessons.json").read_text())["rows"]
  assert [r["test"] for r in lessons] == ["lesson 1"]
  # A packaged copy: its parameters-only checkpoint evaluates the same, and
  # its resume state continues training.
  copy = tmp_path / "copy"
  graph_cli.package_run(out, copy)
  assert graph_eval.eval_main(["--checkpoint", str(copy), "--test",
                               "family"]) == 0
  again = json.loads((copy / "graph-family.json").read_text())
  assert again["rows"] == table["rows"]
  assert graph_cli.main(["--out", str(copy / "resume"), "--resume",
                         "--steps", "3", "--no-progress"]) == 0
  assert graph_cli.load_run(copy / "resume").step == 3
  # Parameters only (the GPU script's paper-size copy): no resume state,
  # and a new run starts from it.
  params_only = graph_cli.package_run(out, tmp_path / "params-only",
                                      resume=False)
  assert not (params_only / "resume").exists()
  assert (params_only / "metrics.jsonl").is_file()
  assert graph_cli.load_run(params_only).step == graph_cli.load_run(out).step


def test_underground_traversal_and_round_scoring(tmp_path):
  run = graph_eval.untrained_run("traversal")
  table = graph_eval.evaluate(run, "underground", episodes=3)
  (row,) = table["rows"]
  assert row["paper"] == 98.8 and row["count"] == 3
  assert row["triples"] == 192 and table["memory_size"] == 256
  # Two rounds in one episode, the second wrong; one in another, right.
  targets = np.zeros((5, 2, 90), np.float32)
  targets[..., 0] = 1
  logits = targets.copy()
  logits[3, 0] = 0
  logits[3, 0, 1] = 1
  mask = np.zeros((5, 2), np.float32)
  mask[[0, 1, 3], 0] = 1
  mask[2, 1] = 1
  assert graph_eval.round_correct(logits, targets, mask).tolist() == [
      True, False, True]


def test_pictures_and_memory_resized_at_test_time(tmp_path):
  assert graph_eval.plot_main(["--untrained", "traversal", "--out",
                               str(tmp_path)]) == 0
  assert (tmp_path / "memory-traversal-lesson1.png").stat().st_size > 1000
  run = graph_eval.untrained_run("traversal")
  sweep = graph_eval.memory_sweep(run, [8, 48], [3, 5], episodes=2)
  assert np.asarray(sweep["accuracy"]).shape == (2, 2)
  assert sweep["triples"] == [6, 15] and sweep["trained_memory_size"] == 48
  graph_eval.plot_sweep(sweep, tmp_path / "sweep.png")
  assert (tmp_path / "sweep.png").stat().st_size > 1000
  metrics = [{"kind": "eval", "step": i, "valid/accuracy": a,
              "valid/lesson": l, "valid/examples_seen": 32 * i}
             for i, (a, l) in enumerate([(0.1, 1), (0.95, 1), (0.2, 2)])]
  metrics += [{"kind": "train", "step": i, "loss": 10.0 / i}
              for i in range(1, 3)]
  graph_eval.plot_curve(metrics, tmp_path / "curve.png")
  with pytest.raises(ValueError, match="no evaluations"):
    graph_eval.plot_curve([], tmp_path / "none.png")


def test_lstm_baseline_and_closed_loop_shortest_path_train(tmp_path,
                                                           capsys):
  out = tmp_path / "lstm"
  assert graph_cli.main(["--task", "inference", "--steps", "2", "--out",
                         str(out)] + TINY + ["--preset", "cpu_lstm"]) == 0
  run = graph_cli.load_run(out)
  assert run.kind == "lstm" and run.model_record == {"hidden_size": 8,
                                                     "num_layers": 1}
  # An LSTM has no memory to picture, but its learning curve is drawn.
  assert graph_eval.plot_main(["--checkpoint", str(out)]) == 0
  assert (out / "learning-curve.png").is_file()
  assert not list(out.glob("memory-*.png"))
  with pytest.raises(SystemExit) as refused:
    graph_eval.plot_main(["--checkpoint", str(out), "--lesson", "1"])
  assert refused.value.code == 2
  assert "no memory to draw" in capsys.readouterr().err
  out = tmp_path / "sp"
  assert graph_cli.main(["--task", "shortest_path", "--steps", "2", "--out",
                         str(out)] + TINY) == 0
  evals = _evals(out)
  assert evals and 0 <= evals[-1]["valid/accuracy"] <= 1
  # The DAgger step reports its own gradient norm (the loop used to log 0).
  train = [m for m in graph_eval.read_metrics(out) if m["kind"] == "train"]
  assert train and all(m["grad_norm"] > 0 for m in train)


def test_ambiguous_fraction_reaches_training_but_not_evaluation():
  skewed = graph.make_task("inference",
                           graph.GraphConfig(ambiguous_fraction=1.0))
  plain = graph.make_task("inference")
  assert skewed.curriculum.task().ambiguous_fraction == 1.0
  rng = lambda: np.random.default_rng(4)
  assert not np.array_equal(skewed.sample(rng(), 8).inputs,
                            plain.sample(rng(), 8).inputs)
  seen = {}

  def recorder(name):
    def predict(params, inputs):
      seen.setdefault(name, []).append(np.asarray(inputs))
      return np.zeros(inputs.shape[:2] + (encoding.OUTPUT_SIZE,), np.float32)
    return predict

  skewed.sample(rng(), 2)  # the trainer's batch size, for examples_seen
  plain.sample(rng(), 2)
  skewed.evaluate(recorder("skewed"), None, step=3)
  plain.evaluate(recorder("plain"), None, step=3)
  assert len(seen["skewed"]) == len(seen["plain"]) >= 1
  for a, b in zip(seen["skewed"], seen["plain"]):
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("argv, message", [
    (["--task", "maze"], "unknown graph task 'maze'"),
    (["--task", "traversal", "--lesson", "99"], "lesson 99 out of range"),
    (["--task", "traversal", "--preset", "huge"], "no preset 'huge'"),
    (["--task", "traversal", "--beta", "0.5"], "--beta does not apply"),
    (["--task", "traversal", "--ambiguous-fraction", "0.5"],
     "--ambiguous-fraction does not apply"),
    (["--task", "inference", "--ambiguous-fraction", "2"],
     "ambiguous_fraction must be in"),
    (["--task", "traversal", "--preset", "cpu", "--kind", "lstm",
      "--num-layers", "0"], "num_layers must be"),
    ([], "--task is required"),
])
def test_bad_training_input_is_one_named_error(argv, message, tmp_path,
                                               capsys):
  with pytest.raises(SystemExit) as exit_info:
    graph_cli.main(argv + ["--out", str(tmp_path / "run")])
  assert exit_info.value.code == 2
  err = capsys.readouterr().err
  assert message in err and len(err.strip().splitlines()) == 1
  assert not (tmp_path / "run").exists()


def test_bad_eval_input_is_one_named_error(tmp_path, capsys):
  with pytest.raises(SystemExit):
    graph_eval.eval_main(["--checkpoint", str(tmp_path), "--test",
                          "underground"])
  assert "is not a graph run folder" in capsys.readouterr().err
  run = graph_eval.untrained_run("traversal")
  with pytest.raises(ValueError, match="'family' needs a run of inference"):
    graph_eval.evaluate(run, "family")
  with pytest.raises(ValueError, match="unknown test 'maze'"):
    graph_eval.evaluate(run, "maze")
  with pytest.raises(ValueError, match="unknown graph task 'maze'"):
    graph_eval.untrained_run("maze")


@pytest.mark.slow
def test_init_from_another_task_starts_from_its_parameters(tmp_path, capsys):
  source = tmp_path / "traversal"
  assert graph_cli.main(["--task", "traversal", "--steps", "2", "--out",
                         str(source)] + TINY) == 0
  trained = graph_cli.load_run(source)
  # The start is the source's parameters exactly, not a random draw.
  model = graph.make_model("dnc", trained.model_record)
  init_fn, record = graph_cli.warm_start(model.init, "dnc", source)
  x = np.zeros((5, 1, 92), np.float32)
  for seed in (0, 1):
    for x_leaf, y_leaf in zip(jax.tree.leaves(trained.params),
                              jax.tree.leaves(init_fn(
                                  jax.random.PRNGKey(seed), x))):
      np.testing.assert_array_equal(x_leaf, y_leaf)
  assert record == {"path": str(source), "task": "traversal", "step": 2}
  out = tmp_path / "inference"
  assert graph_cli.main(["--task", "inference", "--steps", "1",
                         "--checkpoint-every", "1", "--init-from",
                         str(source), "--out", str(out)] + TINY) == 0
  assert graph_cli.load_run(out).record["init_from"] == record
  # The run resumes without its source (a committed run, elsewhere).
  import shutil  # pylint: disable=g-import-not-at-top
  kept = tmp_path / "kept"
  shutil.copytree(source, kept)
  shutil.rmtree(source)
  assert graph_cli.main(["--out", str(out), "--resume", "--steps", "2",
                         "--no-progress"]) == 0
  assert graph_cli.load_run(out).step == 2
  shutil.copytree(kept, source)
  capsys.readouterr()
  # Another controller size: one error naming a parameter and both shapes.
  with pytest.raises(SystemExit):
    graph_cli.main(["--task", "inference", "--steps", "1", "--init-from",
                    str(source), "--out", str(tmp_path / "bad")]
                   + TINY + ["--hidden-size", "6"])
  err = capsys.readouterr().err
  assert "--init-from" in err and "has shape" in err
  assert len(err.strip().splitlines()) == 1
  with pytest.raises(SystemExit):
    graph_cli.main(["--task", "inference", "--kind", "lstm", "--steps", "1",
                    "--init-from", str(source), "--out",
                    str(tmp_path / "lstm")] + TINY)
  assert "cannot start a 'lstm' model" in capsys.readouterr().err
  with pytest.raises(SystemExit):
    graph_cli.main(["--out", str(out), "--resume", "--init-from",
                    str(source)])
  assert "--init-from starts a new run" in capsys.readouterr().err


@pytest.mark.slow
def test_eval_command_aggregates_runs_trained_separately(tmp_path, capsys):
  # Graph tasks do not sweep in one program; runs trained one by one are
  # aggregated by dnc-graph-eval: mean ± sample s.d. over the runs.
  runs = [tmp_path / "trav-0", tmp_path / "trav-1"]
  for seed, out in enumerate(runs):
    assert graph_cli.main(["--task", "traversal", "--steps", "2", "--seed",
                           str(seed), "--out", str(out)] + TINY) == 0
  capsys.readouterr()
  joined = ",".join(str(r) for r in runs)
  with pytest.raises(SystemExit) as exit_info:  # Where would it go?
    graph_eval.eval_main(["--checkpoint", joined, "--test", "lessons"])
  assert exit_info.value.code == 2
  assert "--out" in capsys.readouterr().err
  out = tmp_path / "eval"
  assert graph_eval.eval_main(["--checkpoint", joined, "--test", "lessons",
                               "--episodes", "4", "--out", str(out)]) == 0
  printed = capsys.readouterr().out
  assert "mean ± s.d." in printed and "2 runs" in printed
  assert "| trav-0 |" in printed and "| trav-1 |" in printed
  table = json.loads((out / "graph-lessons.json").read_text())
  assert (out / "graph-lessons.md").read_text() == printed
  single = [graph_eval.evaluate(graph_cli.load_run(r), "lessons", 4)
            for r in runs]
  row = table["rows"][0]
  values = [t["rows"][0]["ours"] for t in single]
  assert row["per_run"] == values and row["runs"] == 2
  assert row["ours"] == round(float(np.mean(values)), 1)
  assert row["ours_sd"] == round(float(np.std(values, ddof=1)), 1)
  assert f"| {row['ours']} ± {row['ours_sd']} |" in printed
  assert [r["name"] for r in table["runs"]] == ["trav-0", "trav-1"]
  assert not (runs[0] / "graph-lessons.json").exists()
  # A run of another task: one line naming it.
  odd = tmp_path / "family-run"
  assert graph_cli.main(["--task", "inference", "--steps", "2", "--out",
                         str(odd)] + TINY) == 0
  capsys.readouterr()
  with pytest.raises(SystemExit) as exit_info:
    graph_eval.eval_main(["--checkpoint", f"{joined},{odd}", "--test",
                          "lessons", "--episodes", "4", "--out", str(out)])
  assert exit_info.value.code == 2
  err = capsys.readouterr().err
  assert len(err.strip().splitlines()) == 1 and "run family-run" in err
  assert "same task" in err


def _inference_batch(seed=0, episodes=4):
  task = curriculum.Curriculum("inference", 1).task(1, pad=False)
  return task, task.sample(np.random.default_rng(seed), episodes)


def _set_field(logits, t, b, field, label):
  """Point ``field`` (0 source, 1 edge, 2 destination) of step ``t``'s
  prediction in episode ``b`` at ``label``."""
  for position, digit in enumerate(encoding.label_digits(label)):
    start = 30 * field + 10 * position
    logits[t, b, start:start + 10] = 0.0
    logits[t, b, start + digit] = 10.0


def test_answer_errors_sorts_wrong_answers_by_field_and_node():
  task, batch = _inference_batch()
  logits = 10.0 * batch.targets  # The modal prediction is the target.
  clean = graph_eval.answer_errors(logits, batch)
  queries = 4 * 3  # Three queries per lesson-1 episode.
  assert clean["queries"] == clean["queries_right"] == queries
  assert clean["answers"] == clean["right"] == queries
  assert clean["terminations"] == clean["terminations_right"] == queries
  assert clean["wrong_field"] == [0, 0, 0] and clean["not_a_node"] == 0
  steps = [np.nonzero(batch.mask[:, b])[0] for b in range(4)]
  # Episode 0, first answer: a destination that is no node of its graph.
  nodes = graph_eval._description_nodes(batch.inputs, 0)
  stranger = next(l for l in range(999) if l not in nodes)
  _set_field(logits, steps[0][0], 0, 2, stranger)
  # Episode 3 too (two answers naming no node, one naming a node).
  nodes = graph_eval._description_nodes(batch.inputs, 3)
  _set_field(logits, steps[3][0], 3, 2,
             next(l for l in range(999) if l not in nodes))
  # Episode 1, first answer: another node of the graph as destination,
  # and a wrong source.
  t = steps[1][0]
  source, _, destination = encoding.decode_triple(batch.targets[t, 1])
  other = next(n for n in graph_eval._description_nodes(batch.inputs, 1)
               if n != destination)
  _set_field(logits, t, 1, 2, other)
  _set_field(logits, t, 1, 0, (source + 1) % 999)
  # Episode 2: its second query's termination step is wrong.
  _set_field(logits, steps[2][3], 2, 1, 5)
  lengths = {k: len(v) for k, v in task.relations.items()}
  got = graph_eval.answer_errors(
      logits, batch, lambda position, target, graph: lengths[target[1]])
  assert got["answers"] == queries and got["right"] == queries - 3
  assert got["terminations_right"] == queries - 1
  assert got["queries_right"] == queries - 4
  assert got["wrong_field"] == [1, 0, 3] and got["not_a_node"] == 2
  assert got["groups"] == {2: [queries - 3, queries]}


class _ReplayEvaluator:
  """Stands in for :class:`graph_eval.Evaluator`: returns logits made in
  advance for the batches ``error_rows`` will draw, in order."""

  def __init__(self, run, inputs_and_logits):
    self.run = run
    self.queue = list(inputs_and_logits)

  def logits(self, inputs):
    expected, logits = self.queue.pop(0)
    np.testing.assert_array_equal(inputs, expected)
    return logits


def test_error_rows_tell_a_walk_from_a_last_label_shortcut():
  # A "network" that answers every query with the destination of the first
  # edge of the graph carrying the relation's last label (no walk): right
  # whenever one edge carries that label, not otherwise. The table must
  # show exactly that, counted here from the episodes themselves.
  task = curriculum.Curriculum("inference", 1).task(1, pad=False)
  rng = np.random.default_rng(5)
  made, expected = [], {}
  for size in (50, 30):  # error_rows draws batches of at most 50 episodes.
    batch = task.sample(rng, size)
    logits = 10.0 * np.asarray(batch.targets)
    for b in range(size):
      x = np.asarray(batch.inputs)[:, b]
      first_pulse = np.nonzero(x[:, encoding.TRIPLE_SIZE] > 0)[0][0]
      graph_edges = [encoding.decode_triple(x[t])
                     for t in range(first_pulse)]
      for t in np.nonzero(np.asarray(batch.mask)[:, b])[0]:
        source, relation, end = encoding.decode_triple(batch.targets[t, b])
        if (source, relation, end) == encoding.TERMINATION:
          continue
        last = task.relations[relation][-1]
        carriers = [d for _, label, d in graph_edges if label == last]
        _set_field(logits, t, b, 2, carriers[0])
        counts = expected.setdefault(len(carriers), [0, 0])
        counts[0] += carriers[0] == end
        counts[1] += 1
    made.append((np.asarray(batch.inputs), logits))
  ev = _ReplayEvaluator(graph_eval.untrained_run("inference"), made)
  rows = graph_eval.error_rows(ev, np.random.default_rng(5), 80)
  assert not ev.queue
  got = {r["what"]: (r["ours"], r["count"]) for r in rows}
  assert expected[1][0] == expected[1][1] and len(expected) > 1
  what = lambda shared: (
      "lesson 1: answers right, the relation's last edge label on "
      f"{shared} edge{'s' if shared > 1 else ''} of the graph")
  for shared, (right, count) in expected.items():
    assert got[what(shared)] == (round(100 * right / count, 1), count)
  assert got[what(1)][0] == 100 and got[what(2)][0] < 100


def test_relation_spread_names_the_worst_and_best_relation():
  rows = graph_eval._relation_spread(
      "lesson 1", "inference", {5: [8, 10], 7: [10, 10], 9: [3, 12]})
  assert [(r["what"], r["ours"], r["count"]) for r in rows] == [
      ("lesson 1: answers right, the worst relation (9)", 25.0, 12),
      ("lesson 1: answers right, the best relation (7)", 100.0, 10),
      # 8 of 10 is not under 80%.
      ("lesson 1: relations with under 80% of answers right", 33.3, 3)]
  assert graph_eval._relation_spread("lesson 1", "inference", {}) == []


def test_errors_test_reports_the_lesson_reached(tmp_path, capsys):
  run = graph_eval.untrained_run("inference")
  table = graph_eval.evaluate(run, "errors", episodes=6)
  rows = {r["what"]: r for r in table["rows"]}
  assert rows["lesson 1: queries answered exactly"]["count"] == 18
  assert sum(r["count"] for what, r in rows.items() if what.startswith(
      "lesson 1: answers right at relation length 2")) == 18
  worst = next(r for what, r in rows.items() if "the worst relation" in what)
  best = next(r for what, r in rows.items() if "the best relation" in what)
  assert worst["ours"] <= best["ours"]
  spread = rows["lesson 1: relations with under 80% of answers right"]
  assert 1 <= spread["count"] <= 18
  wrong = rows["lesson 1: wrong answers with a wrong destination"]
  right = rows["lesson 1: answers right (termination steps apart)"]["ours"]
  assert wrong["count"] == round(18 * (1 - right / 100))
  walk = graph_eval.evaluate(graph_eval.untrained_run("traversal"), "errors",
                             episodes=4)
  assert any(r["what"] == "lesson 1: answers right at step 1 of the walk"
             for r in walk["rows"])
  with pytest.raises(ValueError, match="needs a run of traversal or inf"):
    graph_eval.evaluate(graph_eval.untrained_run("shortest_path"), "errors")


def test_init_from_adds_content_masks_without_changing_the_network(
    tmp_path):
  # A plain DNC may start a DNC with content masks: the masks' interface
  # columns start at zero (uniform masks of 0.5, cosines unchanged), so the
  # grown network's outputs are the source's.
  source = tmp_path / "plain"
  assert graph_cli.main(["--task", "inference", "--steps", "2", "--out",
                         str(source)] + TINY) == 0
  plain = graph_cli.load_run(source)
  masked_record = dict(plain.model_record, content_masking=True)
  masked = graph.make_model("dnc", masked_record)
  init_fn, record = graph_cli.warm_start(masked.init, "dnc", source,
                                         masked_record)
  assert record["added"] == ["content_masking"]
  sample = graph.make_task("inference").sample(np.random.default_rng(3), 2)
  inputs = np.asarray(sample.inputs)
  grown = init_fn(jax.random.PRNGKey(0), inputs)
  module = next(m for m in grown if m.endswith("/interface"))
  width = plain.params[module]["w"].shape[-1]
  cfg = plain.dnc_config()
  extra = cfg.num_reads * cfg.word_size + cfg.num_writes * cfg.word_size
  assert grown[module]["w"].shape[-1] == width + extra
  np.testing.assert_array_equal(grown[module]["w"][:, :width],
                                plain.params[module]["w"])
  assert not np.any(grown[module]["w"][:, width:])
  plain_model = graph.make_model("dnc", plain.model_record)
  before = plain_model.apply(plain.params, inputs)
  after = masked.apply(grown, inputs)
  # Not bit-equal: the cosine's epsilon guard does not scale with the
  # masks (a 1e-4 effect on this tiny, untrained network's small norms).
  np.testing.assert_allclose(np.asarray(after), np.asarray(before),
                             atol=1e-3)
  # Any other change alongside (a wider word; link sharpness, whose
  # columns would not start neutral) is still one named error.
  for change in ({"word_size": 5}, {"link_sharpness": True}):
    other = dict(plain.model_record, content_masking=True, **change)
    init_fn, record = graph_cli.warm_start(
        graph.make_model("dnc", other).init, "dnc", source, other)
    assert "added" not in record
    with pytest.raises(ValueError, match="has shape"):
      init_fn(jax.random.PRNGKey(0), inputs)


def test_stitch_stages_joins_runs_where_each_took_its_parameters(tmp_path):
  def stage(name, batch, lines, init_step=None):
    folder = tmp_path / name
    folder.mkdir()
    settings = {"loop": {"batch_size": batch}}
    if init_step is not None:
      settings["init_from"] = {"path": "x", "task": "inference",
                               "step": init_step}
    (folder / "settings.json").write_text(json.dumps(
        {"task_name": "inference", "settings": settings}))
    (folder / "metrics.jsonl").write_text("\n".join(
        json.dumps(line) for line in lines))
    return folder

  first = stage("a", 16, [
      {"kind": "train", "step": 10, "loss": 3.0},
      {"kind": "eval", "step": 10, "valid/accuracy": 0.1,
       "valid/examples_seen": 160},
      {"kind": "eval", "step": 30, "valid/accuracy": 0.9,
       "valid/examples_seen": 480}])  # After step 20: not in the parameters.
  second = stage("b", 32, [
      {"kind": "train", "step": 5, "loss": 1.0},
      {"kind": "eval", "step": 5, "valid/accuracy": 0.5,
       "valid/examples_seen": 160}], init_step=20)
  joined = graph_eval.stitch_stages([first, second])
  assert [(m["kind"], m["step"]) for m in joined] == [
      ("train", 10), ("eval", 10), ("train", 25), ("eval", 25)]
  assert joined[0]["examples_seen"] == 160
  assert joined[2]["examples_seen"] == 20 * 16 + 5 * 32
  assert joined[3]["valid/examples_seen"] == 20 * 16 + 160
  with pytest.raises(ValueError, match="was not started with --init-from"):
    graph_eval.stitch_stages([second, first])
  with pytest.raises(ValueError, match="needs metrics.jsonl"):
    graph_eval.stitch_stages([tmp_path])
