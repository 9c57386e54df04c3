"""dnc-curve reads a run's evaluations and draws them."""

import json

import pytest

from experiments import curves


def _run(tmp_path, records, settings=None):
  run = tmp_path / "run"
  run.mkdir()
  (run / "metrics.jsonl").write_text(
      "\n".join(json.dumps(r) for r in records) + "\n")
  if settings is not None:
    (run / "settings.json").write_text(json.dumps(settings))
  return run


def test_examples_seen_are_steps_times_the_batch_size(tmp_path):
  run = _run(tmp_path, [
      {"kind": "train", "step": 1, "loss": 3.0},
      {"kind": "eval", "step": 2000, "valid/mean_error": 60.0},
      {"kind": "eval", "step": 4000, "valid/mean_error": 50.0}],
      settings={"loop": {"batch_size": 16}})
  records = curves.read_evaluations(run)
  assert [r["step"] for r in records] == [2000, 4000]
  xs, ys = curves.curve(records, "valid/mean_error",
                        curves.batch_size_of(run))
  assert xs == [32000.0, 64000.0] and ys == [60.0, 50.0]


def test_a_curriculum_counts_its_own_examples(tmp_path):
  records = [{"kind": "eval", "step": 5, "valid/accuracy": 0.5,
              "valid/examples_seen": 123.0}]
  assert curves.curve(records, "valid/accuracy", 16) == ([123.0], [0.5])


def test_command_writes_a_png_and_names_bad_input(tmp_path, capsys):
  run = _run(tmp_path, [
      {"kind": "eval", "step": 10, "valid/mean_error": 40.0,
       "valid/failed_tasks": 12.0}])
  assert curves.main(["--run", str(run)]) == 0
  assert (run / "learning-curve.png").read_bytes()[:4] == b"\x89PNG"
  with pytest.raises(SystemExit):
    curves.main(["--run", str(run), "--metrics", "valid/nothing"])
  assert "valid/nothing" in capsys.readouterr().err
  with pytest.raises(SystemExit):
    curves.main(["--run", str(tmp_path / "missing")])
  assert "no metrics.jsonl" in capsys.readouterr().err


def test_a_sweep_draws_each_member_with_the_mean_and_sd(tmp_path, capsys):
  run = _run(tmp_path, [
      {"kind": "eval", "step": 10, "member": 0, "valid/mean_error": 40.0},
      {"kind": "eval", "step": 10, "member": 1, "valid/mean_error": 60.0},
      {"kind": "eval", "step": 20, "member": 0, "valid/mean_error": 30.0},
      {"kind": "eval", "step": 20, "member": 1, "valid/mean_error": 34.0},
      {"kind": "eval", "step": 30, "member": 0, "valid/mean_error": 9.0}],
      settings={"settings": {"loop": {"batch_size": 2}}})
  records = curves.read_evaluations(run)
  assert curves.members_of(records) == [0, 1]
  xs, mean, sd = curves.member_band(records, "valid/mean_error", 2)
  assert xs == [20.0, 40.0] and mean == [50.0, 32.0]  # Step 30: one only.
  assert sd == pytest.approx([200 ** 0.5, 8 ** 0.5])
  assert curves.main(["--run", str(run), "--metrics",
                      "valid/mean_error"]) == 0
  assert (run / "learning-curve.png").read_bytes()[:4] == b"\x89PNG"
  out = tmp_path / "m1.png"
  assert curves.main(["--run", str(run), "--metrics", "valid/mean_error",
                      "--member", "1", "--out", str(out)]) == 0
  assert out.is_file()
  with pytest.raises(SystemExit):
    curves.main(["--run", str(run), "--member", "5"])
  assert "logs members [0, 1]" in capsys.readouterr().err


def test_a_setting_changed_on_resume_is_marked_where_it_took_effect(
    tmp_path):
  run = _run(tmp_path, [
      {"kind": "eval", "step": 10, "valid/mean_error": 40.0,
       "valid/failed_tasks": 12.0},
      {"kind": "change", "step": 15, "changed": [
          "optimizer.learning_rate: saved 0.0001, now 0.0003",
          "optimizer.max_grad_norm: saved 50.0, now 10.0"]},
      {"kind": "eval", "step": 20, "valid/mean_error": 30.0,
       "valid/failed_tasks": 10.0}],
      settings={"loop": {"batch_size": 4}})
  changes = curves.read_records(run, "change")
  assert curves.change_marks(changes, 4) == [
      (60.0, "learning_rate 0.0003, max_grad_norm 10.0")]
  assert [r["step"] for r in curves.read_evaluations(run)] == [10, 20]
  assert curves.main(["--run", str(run)]) == 0
  assert (run / "learning-curve.png").read_bytes()[:4] == b"\x89PNG"


def test_table_averages_training_lines_over_windows(tmp_path, capsys):
  run = _run(tmp_path, [
      {"kind": "train", "step": 10, "fraction": 0.5, "other": 0.5},
      {"kind": "train", "step": 90, "fraction": 0.7, "other": 0.4},
      {"kind": "eval", "step": 100, "valid/fraction": 0.9},
      {"kind": "train", "step": 100, "fraction": 0.8, "other": 0.2},
      {"kind": "train", "step": 350, "loss": 1.0}])
  records = curves.read_records(run, "train")
  rows = curves.window_means(records, ["fraction", "other"], 100)
  assert [(start, count) for start, count, _ in rows] == [(0, 2), (100, 1),
                                                          (300, 1)]
  assert rows[0][2] == pytest.approx([0.6, 0.45])
  assert rows[1][2] == pytest.approx([0.8, 0.2])
  assert all(m != m for m in rows[2][2])  # No fraction there: NaN.
  assert curves.main(["--run", str(run), "--table", "100"]) == 0
  lines = capsys.readouterr().out.splitlines()
  assert lines[0] == "| updates | lines | fraction | other | fraction - other |"
  assert lines[2] == "| 0-99 | 2 | 0.6000 | 0.4500 | +0.1500 |"
  assert lines[3] == "| 100-199 | 1 | 0.8000 | 0.2000 | +0.6000 |"
  assert not (run / "learning-curve.png").exists()
  with pytest.raises(SystemExit) as exit_info:
    curves.main(["--run", str(run), "--table", "100", "--metrics", "nope"])
  assert exit_info.value.code == 2
  assert "no training line" in capsys.readouterr().err
  with pytest.raises(SystemExit):
    curves.main(["--run", str(run), "--table", "0"])
  assert "window must be >= 1" in capsys.readouterr().err


def test_table_of_a_sweep_keeps_each_members_lines_apart(tmp_path, capsys):
  run = _run(tmp_path, [
      {"kind": "train", "step": 5, "member": 0, "loss": 2.0},
      {"kind": "train", "step": 5, "member": 1, "loss": 4.0},
      {"kind": "train", "step": 15, "member": 0, "loss": 1.0},
      {"kind": "train", "step": 15, "member": 1, "loss": 3.0}])
  assert curves.main(["--run", str(run), "--table", "10"]) == 0
  out = capsys.readouterr().out
  first, second = out.split("member 1")
  assert "member 0" in first and "| 0-9 | 1 | 2.0000 |" in first
  assert "| 10-19 | 1 | 1.0000 |" in first and "4.0000" not in first
  assert "| 0-9 | 1 | 4.0000 |" in second
  assert "| 10-19 | 1 | 3.0000 |" in second
  assert curves.main(["--run", str(run), "--table", "10", "--member",
                      "1"]) == 0
  out = capsys.readouterr().out
  assert "member" not in out and "| 0-9 | 1 | 4.0000 |" in out
  assert "2.0000" not in out
  with pytest.raises(SystemExit) as exit_info:
    curves.main(["--run", str(run), "--table", "10", "--member", "7"])
  assert exit_info.value.code == 2
  assert "logs members [0, 1]" in capsys.readouterr().err
  (tmp_path / "one").mkdir()
  single = _run(tmp_path / "one", [{"kind": "train", "step": 1, "loss": 1.0}])
  with pytest.raises(SystemExit):
    curves.main(["--run", str(single), "--table", "10", "--member", "0"])
  assert "is not a sweep" in capsys.readouterr().err
