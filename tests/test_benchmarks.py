"""The benchmark helpers that are not timings: HLO loop counting."""

import json

import jax
import jax.numpy as jnp
import pytest

from benchmarks import hlo_loops


def test_hlo_loops_finds_a_scan_body_and_its_work():
  def step(carry, x):
    carry = jnp.tanh(carry @ jnp.ones((4, 4)) + x)
    return carry, carry

  def run(xs):
    return jax.lax.scan(step, jnp.zeros(4), xs)[1]

  hlo = jax.jit(run).lower(jnp.ones((5, 4))).compile().as_text()
  loops = hlo_loops.loop_bodies(hlo)
  assert len(loops) == 1
  (counts,) = loops.values()
  assert sum(counts.values()) >= 1  # at least the matmul or its fusion
  assert not hlo_loops.loop_bodies(
      jax.jit(jnp.sin).lower(1.0).compile().as_text())


def test_ratios_use_the_fastest_peer_of_each_memory_size():
  from benchmarks.speed import set_ratios

  def row(size, rate, peer=False):
    return {"config": {"memory_size": size}, "peer": peer,
            "result": {"train_seq_steps_per_s": rate}}

  rows = [row(256, 500.0, peer=True), row(256, 2000.0),
          row(256, 800.0, peer=True), row(1024, 300.0),
          row(1024, 100.0, peer=True), row(16, 50.0)]
  set_ratios(rows)
  assert rows[1]["ratio"] == 2000.0 / 800.0  # not the slower 500
  assert rows[0]["ratio"] == 500.0 / 800.0
  assert rows[3]["ratio"] == 3.0
  assert rows[5]["ratio"] is None  # no peer timed at N = 16


def test_babi_mixture_weights_each_bucket_by_its_share():
  from benchmarks.babi_speed import combine

  shares = {32: 0.5, 64: 0.3, 128: 0.2}
  seconds = {32: 1.0, 64: 2.0}  # 128 not timed: shares renormalised
  result = combine(shares, seconds, batch_size=16)
  per_batch = (0.5 * 1.0 + 0.3 * 2.0) / 0.8
  assert abs(result["seconds_per_batch"] - per_batch) < 1e-12
  assert abs(result["stories_per_s"] - 16 / per_batch) < 1e-9
  mean_length = (0.5 * 32 + 0.3 * 64) / 0.8
  assert abs(result["seq_steps_per_s"] - 16 * mean_length / per_batch) < 1e-6
  assert abs(result["coverage"] - 0.8) < 1e-12


def test_flop_count_grows_quadratically_with_a_dense_link_only():
  from benchmarks.speed import flops_per_seq_step

  base = dict(memory_size=256, word_size=64, num_reads=4, hidden_size=256,
              inputs=8, link_sparsity=None)
  dense = [flops_per_seq_step(dict(base, memory_size=n))["forward"]
           for n in (256, 512, 1024)]
  # Second differences of a quadratic in N are constant and positive.
  assert dense[2] - 2 * dense[1] + dense[0] > 0
  sparse = [flops_per_seq_step(dict(base, memory_size=n,
                                    link_sparsity=8))["forward"]
            for n in (256, 512, 1024)]
  assert abs((sparse[2] - sparse[1]) - 2 * (sparse[1] - sparse[0])) < 1e-6
  assert flops_per_seq_step(base)["train"] == 3 * dense[0]


def test_hugepages_adds_the_malloc_tunable_once():
  from benchmarks.speed import with_hugepages
  assert with_hugepages(None) == "glibc.malloc.hugetlb=1"
  assert with_hugepages("glibc.malloc.arena_max=2") == (
      "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1")
  assert with_hugepages("glibc.malloc.hugetlb=0:x=1") == (
      "x=1:glibc.malloc.hugetlb=1")


def test_sweep_benchmark_alternates_rounds_and_writes_rows(tmp_path, capsys):
  from benchmarks import sweep as sweep_bench  # pylint: disable=g-import-not-at-top
  out = tmp_path / "rows.json"
  sweep_bench.main(["--members", "1,2", "--steps", "1", "--rounds", "2",
                    "--hidden-size", "8", "--memory-size", "4",
                    "--word-size", "4", "--json", str(out)])
  rows = json.loads(out.read_text())
  assert [r["members"] for r in rows] == [1, 2]
  for r in rows:
    assert r["rounds"] == 2 and r["together_s"] > 0 and r["sequential_s"] > 0
    assert r["speedup"] == r["sequential_s"] / r["together_s"]
  assert "| S |" in capsys.readouterr().out


def test_gpu_link_benchmark_smoke_in_interpret_mode(tmp_path, capsys):
  from benchmarks import gpu_link  # pylint: disable=g-import-not-at-top
  if jax.default_backend() != "gpu":
    # Without a GPU it refuses to time anything unless asked to interpret.
    assert gpu_link.main([]) == 2
    assert "no GPU here" in capsys.readouterr().err
  out = tmp_path / "gpu_link.md"
  assert gpu_link.main(["--interpret", "--sizes", "8", "--repeats", "1",
                        "--out", str(out)]) == 0
  rows = [line for line in out.read_text().splitlines()
          if line.startswith("| 8 |")]
  assert [row.split("|")[2].strip() for row in rows] == [
      "forward", "forward + VJP"]
  for row in rows:  # The two paths agree (last column: max abs diff).
    assert float(row.split("|")[-2]) < 1e-5


def test_speed_peer_order_after_times_our_rows_first(monkeypatch, tmp_path,
                                                     capsys):
  # A run cut by a deadline keeps whatever was timed first: with
  # --peer-order after that is our row, not the peers' "before" rows.
  from benchmarks import speed  # pylint: disable=g-import-not-at-top
  calls = []
  result = {"forward_seq_steps_per_s": 1.0, "train_seq_steps_per_s": 1.0}

  def fake_peer(python, config, device, timeout, source):
    calls.append("peer")
    return dict(result, implementation="peer")

  def fake_ours(config, timeout):
    calls.append("ours")
    return dict(result)

  monkeypatch.setattr(speed, "run_peer", fake_peer)
  monkeypatch.setattr(speed, "run_in_subprocess", fake_ours)
  base = ["--memory-sizes", "16", "--links", "dense", "--peers",
          "--peer-python", "python3", "--peer-source", "none"]
  assert speed.main(base + ["--peer-order", "after"]) == 0
  assert calls == ["ours", "peer"]
  calls.clear()
  assert speed.main(base) == 0
  assert calls == ["peer", "ours", "peer"]
  capsys.readouterr()


def test_loop_ab_times_between_the_skip_and_last_metric_lines(tmp_path):
  from benchmarks import babi_loop_ab

  metrics = tmp_path / "metrics.jsonl"
  lines = [{"kind": "train", "step": s, "time": 1000.0 + 2.0 * s}
           for s in (50, 100, 150, 200)]
  lines.insert(2, {"kind": "eval", "step": 100, "time": 5000.0})
  metrics.write_text("\n".join(json.dumps(l) for l in lines)
                     + '\n{"kind": "train", "st')  # a line being written
  parsed = babi_loop_ab.train_lines(metrics)
  assert [r["step"] for r in parsed] == [50, 100, 150, 200]
  # 16 stories a step, 100 steps in 200 s: compilation before step 100 and
  # the evaluation line are not counted.
  assert babi_loop_ab.stories_per_second(parsed, 16, 100, 200) == 8.0
  assert babi_loop_ab.train_lines(tmp_path / "missing.jsonl") == []
  with pytest.raises(ValueError, match="steps 100 and 250"):
    babi_loop_ab.stories_per_second(parsed, 16, 100, 250)


def test_loop_ab_refuses_bad_arguments_by_name(tmp_path):
  from benchmarks import babi_loop_ab

  with pytest.raises(SystemExit):
    babi_loop_ab.main(["--skip", "300", "--steps", "250"])
  with pytest.raises(SystemExit):
    babi_loop_ab.main(["--skip", "75"])
  with pytest.raises(SystemExit):
    babi_loop_ab.main(["--data-dir", str(tmp_path)])
