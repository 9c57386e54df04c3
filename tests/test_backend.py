"""One backend decision: with "xla" no custom call is lowered anywhere."""

import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dnc_jax import DNC, DNCConfig, addressing, backend, cpu_kernels, fused
from dnc_jax import sorting
from dnc_jax.links import indexed

needs_kernels = pytest.mark.skipif(cpu_kernels.compiler() is None,
                                   reason="no C++ compiler for the kernels")

N = 4096  # At least sorting._KERNEL_MIN_SIZE elements in one row.


def lowered_dnc_unroll(memory_backend, **kw):
  """The StableHLO text of a 2-step DNC unroll at B=1, N=4096 (not run)."""
  config = DNCConfig(output_size=2, memory_size=N, word_size=4, num_reads=1,
                     hidden_size=8, memory_backend=memory_backend, **kw)

  def fn(x):
    core = DNC(config)
    return hk.dynamic_unroll(core, x, core.initial_state(1))[0]

  model = hk.without_apply_rng(hk.transform(fn))
  x = jax.ShapeDtypeStruct((2, 1, 3), jnp.float32)
  params = jax.eval_shape(model.init, jax.random.PRNGKey(0), x)
  loss = lambda p, x: jnp.sum(model.apply(p, x))
  return jax.jit(jax.grad(loss)).lower(params, x).as_text()


LINKS = {"no_links": dict(use_temporal_links=False),
         "indexed": dict(link_sparsity=4, link_storage="indexed"),
         "truncated": dict(link_sparsity=4, link_storage="dense")}


@pytest.mark.parametrize("memory_backend", ["xla", "pallas"])
@pytest.mark.parametrize("links", ["no_links", "indexed"])
def test_xla_backend_lowers_no_custom_call(links, memory_backend):
  # "pallas" is XLA but for the dense link (tests/test_pallas_link.py).
  assert "custom_call" not in lowered_dnc_unroll(memory_backend,
                                                 **LINKS[links])


@needs_kernels
@pytest.mark.parametrize("links", ["no_links", "indexed"])
def test_auto_backend_lowers_kernels_on_cpu(links):
  text = lowered_dnc_unroll("auto", **LINKS[links])
  assert "custom_call" in text and "DncMemoryStepForward" in text
  if links == "indexed":  # the whole sparse step: one kernel pair
    assert "DncSparseLinkStep" in text and "DncSparseLinkStepVjp" in text
    assert "DncSparseLinkUpdate" not in text and "DncSparseReadOut" not in text


@needs_kernels
def test_sorts_and_link_follow_the_backend_argument():
  x = jnp.asarray(np.random.default_rng(0).uniform(size=(1, N)), jnp.float32)
  cases = {
      "argsort": lambda b: sorting.argsort(x, backend=b),
      "top_k": lambda b: sorting.top_k(x, 8, backend=b),
      "allocation": lambda b: addressing.allocation_weights(x, backend=b),
      "truncated": lambda b: addressing.sparse_link_update(
          jnp.zeros((1, 1, 64, 64)), jnp.zeros((1, 1, 64)),
          jnp.zeros((1, 1, 64)), 4, backend=b),
  }
  for name, fn in cases.items():
    assert "custom_call" not in jax.jit(lambda: fn("xla")).lower().as_text(), (
        name)
  for name in ("argsort", "top_k", "allocation"):
    text = jax.jit(lambda: cases[name]("auto")).lower().as_text()
    assert "custom_call" in text, name
  # Same values either way (ties are absent in uniform draws).
  np.testing.assert_array_equal(cases["argsort"]("xla"),
                                cases["argsort"]("auto"))
  np.testing.assert_array_equal(np.argsort(np.asarray(x), -1, kind="stable"),
                                cases["argsort"]("auto"))


def test_backend_argument_is_validated_everywhere():
  x = jnp.zeros((3,))
  for call in (lambda: sorting.argsort(x, backend="gpu"),
               lambda: sorting.top_k(x, 1, backend="cuda"),
               lambda: addressing.allocation_weights(x[None], backend="c"),
               lambda: indexed.update(
                   jnp.zeros((3, 1), jnp.int32), jnp.zeros((3, 1)),
                   jnp.zeros(3), jnp.zeros(3), backend="fast")):
    with pytest.raises(ValueError, match="backend must be one of"):
      call()


def test_target_names_are_the_registered_ones():
  assert set(backend.all_targets()) == set(cpu_kernels.TARGETS)
  assert backend.target(backend.TOP_K, np.float64) == "DncTopKF64"
  with pytest.raises(ValueError, match="no CPU kernel"):
    backend.target(backend.TOP_K, np.float16)


def test_fused_operand_order_and_link_alias():
  # The order csrc/memory_step.cc reads (16 inputs, 7 outputs) and the
  # backward kernel's in-place link: operand g_link (16 + 4) -> result 13.
  assert fused.KernelInputs._fields == (
      "read_keys", "read_strengths", "write_keys", "write_strengths",
      "erase_vectors", "write_vectors", "free_gates", "allocation_gates",
      "write_gates", "read_modes", "memory", "read_weights", "write_weights",
      "link", "precedence", "usage")
  assert fused.KernelOutputs._fields == (
      "read_words", "memory", "read_weights", "write_weights", "link",
      "precedence", "usage")
  assert fused._LINK_IN_PLACE == {"forward": {}, "backward": {20: 13}}
