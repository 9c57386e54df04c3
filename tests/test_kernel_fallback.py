"""Without the C++ kernels the library warns once and uses XLA, same values.

Run in subprocesses (the kernels' availability is decided once a process):
a compiler that fails (``CXX=/bin/false``, a fresh empty cache, and no
install-time library) and ``DNC_JAX_DISABLE_FUSED=1``. Each prints its
warnings, whether the lowered HLO has any custom call, and its values; the
values are compared with this process's (kernel) results.
"""

import json
import os
import pathlib
import subprocess
import sys

import jax
import numpy as np
import pytest

from dnc_jax import cpu_kernels, memory_step, sorting
from helpers import random_interface, random_state

ROOT = pathlib.Path(__file__).resolve().parent

SCRIPT = r"""
import json, pathlib, sys, warnings
import numpy as np
sys.path.insert(0, sys.argv[1])
import jax
jax.config.update("jax_enable_x64", True)
from dnc_jax import cpu_kernels, memory_step, sorting
from helpers import random_interface, random_state
cpu_kernels.SHIPPED_DIR = pathlib.Path("/nonexistent")  # no install build
with warnings.catch_warnings(record=True) as caught:
  warnings.simplefilter("always")
  x = np.random.default_rng(0).normal(size=(2, 5000))
  rng = np.random.default_rng(1)
  iface, state = random_interface(rng, 2, 2, 1, 4), random_state(
      rng, 2, 8, 4, 2, 1)
  step = lambda i, s: memory_step(i, s)  # backend "auto"
  texts = [jax.jit(sorting.argsort).lower(x).as_text(),
           jax.jit(lambda x: sorting.top_k(x, 5)).lower(x).as_text(),
           jax.jit(step).lower(iface, state).as_text()]
  out = dict(argsort=sorting.argsort(x).tolist(),
             top_k=np.asarray(sorting.top_k(x, 5)[1]).tolist(),
             words=np.asarray(step(iface, state)[0]).tolist())
  sorting.argsort(x)  # again: no second warning
messages = [str(w.message) for w in caught
            if "kernels are unavailable" in str(w.message)]
out.update(messages=messages, custom_calls=sum(
    t.count("custom_call") for t in texts))
print("RESULT" + json.dumps(out))
"""


def run_without_kernels(tmp_path, **env):
  environ = {**os.environ, "DNC_JAX_CACHE": str(tmp_path / "cache"), **env}
  result = subprocess.run(
      [sys.executable, "-c", SCRIPT, str(ROOT)], capture_output=True,
      text=True, env=environ, cwd=ROOT.parent, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  line = [l for l in result.stdout.splitlines() if l.startswith("RESULT")]
  return json.loads(line[-1][len("RESULT"):])


def expected():
  """This process's values (the kernels where available)."""
  x = np.random.default_rng(0).normal(size=(2, 5000))
  rng = np.random.default_rng(1)
  iface, state = random_interface(rng, 2, 2, 1, 4), random_state(
      rng, 2, 8, 4, 2, 1)
  return dict(argsort=np.asarray(sorting.argsort(x)),
              top_k=np.asarray(sorting.top_k(x, 5)[1]),
              words=np.asarray(memory_step(iface, state)[0]))


def check_values(got):
  want = expected()
  np.testing.assert_array_equal(got["argsort"], want["argsort"])
  np.testing.assert_array_equal(got["top_k"], want["top_k"])
  np.testing.assert_allclose(got["words"], want["words"], atol=1e-12)


def test_failing_compiler_warns_once_and_uses_xla(tmp_path):
  got = run_without_kernels(tmp_path, CXX="/bin/false")
  assert len(got["messages"]) == 1, got["messages"]
  assert "compiling the CPU kernels failed" in got["messages"][0]
  assert got["custom_calls"] == 0
  assert not any((tmp_path / "cache").glob("*.so"))
  check_values(got)


def test_disabled_kernels_use_xla(tmp_path):
  got = run_without_kernels(tmp_path, DNC_JAX_DISABLE_FUSED="1")
  assert got["custom_calls"] == 0
  check_values(got)


def test_this_process_uses_the_kernels_it_compares_with():
  # Otherwise the comparisons above would be XLA against XLA.
  if not cpu_kernels.available():
    pytest.skip("the C++ kernels are unavailable (no compiler?)")
  x = np.zeros((2, 5000))
  assert "DncArgsort" in jax.jit(sorting.argsort).lower(x).as_text()
