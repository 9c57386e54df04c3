"""Same-process A/B of the training step: the indexed sparse link's step as
one kernel pair (``DncSparseLinkStep[Vjp]``, this checkout) against the
update and read-out kernels as built from an older commit's ``csrc``
(registered under other target names, ``Old...``).

    python -m benchmarks.sparse_step_ab N [blocks] [calls] [commit]

LSTM 256, W = 64, R = 4, B = 16, T = 64, K = 8, indexed storage, memory
size ``N``; ``blocks * calls`` pairs of calls, interleaved (old first on
even pairs, new first on odd ones), the ratio old/new of each pair, then
their median and quartiles (wall and process CPU time). ``commit``
(default 413c34e, the last before the step kernel) gives the old kernels'
sources (``git show``). docs/kernels.md has the results.
"""
import ctypes
import pathlib
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import haiku as hk
import jax
import jax.numpy as jnp
import optax

from dnc_jax import DNC, DNCConfig, unroll, cpu_kernels
from dnc_jax import backend as backends
from dnc_jax.links import indexed

OLD = ("DncSparseLinkUpdate", "DncSparseLinkUpdateVjp", "DncSparseReadOut",
       "DncSparseReadOutVjp")


def main():
  N = int(sys.argv[1])
  BLOCKS = int(sys.argv[2]) if len(sys.argv) > 2 else 3
  CALLS = int(sys.argv[3]) if len(sys.argv) > 3 else 10
  COMMIT = sys.argv[4] if len(sys.argv) > 4 else "413c34e"
  scratch = pathlib.Path(tempfile.mkdtemp())
  old_csrc = scratch / "csrc"
  old_csrc.mkdir()
  for name in ("common.h", "parallel.h", "memory_step.cc", "sorting.cc",
               "sparse_link.cc"):
    (old_csrc / name).write_bytes(subprocess.run(
        ["git", "show", f"{COMMIT}:dnc_jax/csrc/{name}"], check=True,
        capture_output=True).stdout)
  old_lib = cpu_kernels.compile_library(scratch / "old_kernels.so", old_csrc)
  assert cpu_kernels.available()
  lib = ctypes.cdll.LoadLibrary(str(old_lib))
  for stem in OLD:
    for sfx in ("F32", "F64"):
      jax.ffi.register_ffi_target("Old" + stem + sfx,
                                  jax.ffi.pycapsule(getattr(lib, stem + sfx)),
                                  platform="cpu")

  real_target = backends.target

  def old_target(stem, dtype):
    name = real_target(stem, dtype)
    return "Old" + name if stem in OLD else name

  def old_link_step(indices, values, precedence, write_weights, prev_rw,
                    content, modes, memory, backend="auto"):
    i, v = indexed.update(indices, values, precedence, write_weights,
                          backend=backend)
    rw, words = indexed.read_out(i, v, prev_rw, content, modes, memory,
                                 backend=backend)
    return indexed.StepOutputs(i, v, rw, words)

  B, T = 16, 64
  cfg = DNCConfig(output_size=8, input_size=8, memory_size=N, word_size=64,
                  num_reads=4, hidden_size=256, link_sparsity=8,
                  link_storage="indexed", memory_backend="auto")

  def forward(inputs):
    core = DNC(cfg)
    return unroll(core, inputs, core.initial_state(B), remat_chunk=None)[0]

  model = hk.without_apply_rng(hk.transform(forward))
  key = jax.random.PRNGKey(0)
  inputs = jax.random.normal(key, (T, B, 8))
  targets = jax.random.normal(jax.random.PRNGKey(1), inputs.shape)
  params = model.init(key, inputs)
  opt = optax.chain(optax.clip_by_global_norm(50.0),
                    optax.rmsprop(1e-4, eps=1e-10, initial_scale=1.0))
  opt_state = opt.init(params)

  def train_step(params, opt_state, inputs, targets):
    def loss(p):
      return jnp.mean((model.apply(p, inputs) - targets) ** 2)
    value, grads = jax.value_and_grad(loss)(params)
    updates, opt_state = opt.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, value

  args = (params, opt_state, inputs, targets)
  compiled = {}
  text = {}
  new_link_step = indexed.link_step
  for name in ("new", "old"):
    if name == "old":  # traced with the old kernels' calls
      indexed.link_step, backends.target = old_link_step, old_target
    # A fresh function each time: jax would reuse the first trace otherwise.
    lowered = jax.jit(lambda *a: train_step(*a)).lower(*args)
    text[name] = lowered.as_text()
    compiled[name] = lowered.compile()
    indexed.link_step = new_link_step
  backends.target = real_target
  assert "DncSparseLinkStepVjp" in text["new"]
  assert "OldDncSparse" not in text["new"]
  assert "OldDncSparseLinkUpdateVjp" in text["old"]
  assert "DncSparseLinkStep" not in text["old"]
  # Same values either way.
  print("loss new", float(compiled["new"](*args)[2]), "old",
        float(compiled["old"](*args)[2]))
  for fn in compiled.values():
    for _ in range(2):
      jax.block_until_ready(fn(*args))

  def cpu():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime

  # Calls interleaved pair by pair (old first on even pairs, new first on odd
  # ones); the ratio of each pair, then the median and quartiles of those.
  PAIRS = BLOCKS * CALLS
  wall_ratio, cpu_ratio, walls = [], [], {"old": [], "new": []}
  for p in range(PAIRS):
    order = ("old", "new") if p % 2 == 0 else ("new", "old")
    got = {}
    for name in order:
      c0, t0 = cpu(), time.perf_counter()
      jax.block_until_ready(compiled[name](*args))
      got[name] = (time.perf_counter() - t0, cpu() - c0)
      walls[name].append(got[name][0])
    wall_ratio.append(got["old"][0] / got["new"][0])
    cpu_ratio.append(got["old"][1] / got["new"][1])

  def q(xs):
    return statistics.quantiles(xs, n=4)

  print(f"N={N}: {PAIRS} interleaved pairs; median wall old "
        f"{statistics.median(walls['old'])*1e3:.0f} ms new "
        f"{statistics.median(walls['new'])*1e3:.0f} ms")
  print(f"N={N} speed-up old/new per pair: wall median "
        f"{statistics.median(wall_ratio):.3f} (quartiles "
        f"{q(wall_ratio)[0]:.3f}-{q(wall_ratio)[2]:.3f}), cpu median "
        f"{statistics.median(cpu_ratio):.3f} "
        f"(quartiles {q(cpu_ratio)[0]:.3f}-{q(cpu_ratio)[2]:.3f})", flush=True)


if __name__ == "__main__":
  main()
