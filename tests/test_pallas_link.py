"""The Pallas link step (interpret mode on the CPU) against the XLA path.

``dnc_jax.pallas_link`` is compared with ``addressing.link_step`` (and a
NumPy formula), an independent composition of XLA operations with its own
hand-written VJP: values, VJPs for random cotangents, numerical gradients,
transforms, and a whole DNC under ``memory_backend="pallas"`` against
``"xla"``. Sizes are tiny: interpret mode runs the kernel grid step by grid
step.
"""

import functools

import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from helpers import random_interface, random_state
from dnc_jax import (DNC, DNCConfig, addressing, backend,
                     initial_access_state, memory_step, pallas_link)

# (B, H, N, R, block): one tile; padding of N and R (N = 5, 6, R = 3);
# a 2 × 2 grid of tiles (N = 16, block 8); a padded, tiled N = 11.
SHAPES = [(2, 1, 8, 2, None), (3, 2, 6, 2, None), (1, 2, 5, 3, None),
          (2, 1, 16, 2, 8), (1, 2, 11, 2, 4)]


def operands_for(b, h, n, r, dtype, seed=0):
  rng = np.random.default_rng(seed)

  def weights(*shape):
    x = rng.uniform(size=shape)
    return 0.9 * x / x.sum(axis=-1, keepdims=True)

  link = rng.uniform(size=(b, h, n, n)) / n * (1.0 - np.eye(n))
  return tuple(jnp.asarray(x, dtype) for x in (
      link, weights(b, h, n), weights(b, h, n), weights(b, r, n)))


def pallas(block=None):
  return functools.partial(pallas_link.link_step, interpret=True,
                           block_size=block)


def numpy_link_step(link, prec, write, read):
  """The equations of docs/maths.md §3 in NumPy, float64."""
  link, prec, write, read = (np.asarray(x, np.float64)
                             for x in (link, prec, write, read))
  w_i, w_j = write[..., :, None], write[..., None, :]
  new = (1 - w_i - w_j) * link + w_i * prec[..., None, :]
  new = new * (1.0 - np.eye(link.shape[-1]))
  forward = np.einsum("bhij,brj->brhi", new, read)
  backward = np.einsum("bhji,brj->brhi", new, read)
  return new, forward, backward


CASES = [(shape, jnp.float64) for shape in SHAPES] + [
    (SHAPES[1], jnp.float32), (SHAPES[3], jnp.float32)]


@pytest.mark.parametrize("shape,dtype", CASES, ids=str)
def test_values_and_vjp_equal_the_xla_link_step(shape, dtype):
  *sizes, block = shape
  args = operands_for(*sizes, dtype)
  rng = np.random.default_rng(2)
  cotangents = tuple(jnp.asarray(rng.normal(size=x.shape), dtype)
                     for x in numpy_link_step(*args))

  def values_and_vjp(fn):
    values, pull = jax.vjp(fn, *args)
    return values, pull(cotangents)

  got, got_vjp = jax.jit(functools.partial(values_and_vjp, pallas(block)))()
  want, want_vjp = jax.jit(functools.partial(values_and_vjp,
                                             addressing.link_step))()
  exact = numpy_link_step(*args)
  atol = 1e-6 if dtype == jnp.float32 else 1e-14
  for g, w, e in zip(got, want, exact):
    assert g.dtype == dtype and g.shape == w.shape
    np.testing.assert_allclose(g, w, atol=atol, rtol=0)
    np.testing.assert_allclose(g, e, atol=atol, rtol=0)
  # The diagonal is exactly zero, also where the tiles and padding meet.
  diagonal = np.diagonal(np.asarray(got[0]), axis1=-2, axis2=-1)
  assert np.all(diagonal == 0)
  # The VJP for random cotangents: the Pallas backward kernel against the
  # XLA path's hand-written one.
  atol = 1e-5 if dtype == jnp.float32 else 1e-13
  for g, w in zip(got_vjp, want_vjp):
    assert g.dtype == dtype
    np.testing.assert_allclose(g, w, atol=atol, rtol=0)


def test_numerical_gradients_float64():
  args = operands_for(2, 2, 5, 2, jnp.float64, seed=3)
  check_grads(jax.jit(pallas(4)), args, order=1, modes=["rev"], atol=1e-6,
              rtol=1e-6)


def test_jit_vmap_and_no_batch_axes():
  b, h, n, r = 3, 2, 6, 2
  args = operands_for(b, h, n, r, jnp.float64, seed=4)
  want = jax.jit(addressing.link_step)(*args)
  jitted = jax.jit(pallas())(*args)

  def loss(fn, *a):
    _, forward, backward = fn(*a)
    return jnp.sum(forward) + jnp.sum(backward ** 2)

  # vmap over the batch: the kernel then sees no batch axes at all.
  mapped, mapped_grad = jax.jit(lambda *a: (
      jax.vmap(pallas())(*a),
      jax.vmap(jax.grad(functools.partial(loss, pallas()),
                        argnums=(0, 1, 2, 3)))(*a)))(*args)
  want_grad = jax.jit(jax.vmap(jax.grad(
      functools.partial(loss, addressing.link_step),
      argnums=(0, 1, 2, 3))))(*args)
  for got in (jitted, mapped):
    for g, w in zip(got, want):
      np.testing.assert_allclose(g, w, atol=1e-14, rtol=0)
  for g, w in zip(mapped_grad, want_grad):
    np.testing.assert_allclose(g, w, atol=1e-13, rtol=0)


@pytest.mark.parametrize("name,bad,message", [
    ("prev_link", (2, 1, 6, 5), "prev_link has shape"),
    ("prev_precedence", (2, 1, 5), "prev_precedence has shape"),
    ("write_weights", (2, 2, 6), "write_weights has shape"),
    ("prev_read_weights", (3, 2, 6), "prev_read_weights has shape"),
    ("prev_read_weights", (6,), "prev_read_weights has shape"),
])
def test_bad_shapes_name_the_operand(name, bad, message):
  args = dict(zip(("prev_link", "prev_precedence", "write_weights",
                   "prev_read_weights"), operands_for(2, 1, 6, 2,
                                                      jnp.float32)))
  args[name] = jnp.zeros(bad, jnp.float32)
  with pytest.raises(ValueError, match=message):
    pallas_link.link_step(**args, interpret=True)
  with pytest.raises(ValueError, match=message):
    pallas_link.link_step_for_platform(*args.values())


def test_bad_dtype_and_options_raise():
  args = list(operands_for(1, 1, 4, 2, jnp.float32))
  with pytest.raises(ValueError, match="write_weights has dtype float64"):
    pallas(None)(args[0], args[1], args[2].astype(jnp.float64), args[3])
  with pytest.raises(ValueError, match="prev_link must be a float array"):
    pallas(None)(args[0].astype(jnp.int32), *args[1:])
  with pytest.raises(ValueError, match="block_size must be a power of two"):
    pallas_link.link_step(*args, interpret=True, block_size=6)
  with pytest.raises(ValueError, match="interpret must be a bool"):
    pallas_link.link_step(*args, interpret="yes")


def test_pallas_is_a_backend_and_a_config_value():
  assert "pallas" in backend.BACKENDS
  assert backend.check_backend("pallas") == "pallas"
  assert DNCConfig(output_size=1, memory_backend="pallas").memory_backend == (
      "pallas")
  # It issues no CPU kernel call anywhere.
  assert not backend.use_kernels("pallas", jnp.zeros(3, jnp.float32))


def test_memory_step_equals_the_xla_path():
  """With the options of docs/maths.md §8 too (they run on XLA around it)."""
  b, n, w, r, h = 2, 6, 3, 2, 2
  rng = np.random.default_rng(5)
  iface = random_interface(rng, b, r, h, w)._replace(
      read_masks=rng.uniform(size=(b, r, w)),
      write_masks=rng.uniform(size=(b, h, w)),
      link_sharpness=1.0 + rng.uniform(size=(b, r, 2 * h)))
  state = random_state(rng, b, n, w, r, h)

  @functools.partial(jax.jit, static_argnums=0)
  def run(backend_, iface, state, cotangent):
    out, pull = jax.vjp(lambda i, s: memory_step(i, s, backend=backend_),
                        iface, state)
    return out, pull(cotangent)

  cotangent = jax.tree.map(lambda x: rng.normal(size=np.shape(x)),
                           jax.eval_shape(lambda: memory_step(iface, state)))
  want, grad_want = run("xla", iface, state, cotangent)
  got, grad_got = run("pallas", iface, state, cotangent)
  for g, x in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
    np.testing.assert_allclose(g, x, atol=1e-13, rtol=0)
  for g, x in zip(jax.tree.leaves(grad_got), jax.tree.leaves(grad_want)):
    np.testing.assert_allclose(g, x, atol=1e-12, rtol=0)


@pytest.mark.parametrize("sizes", [dict(link_sparsity=3),
                                   dict(link_sparsity=3, link_storage="dense"),
                                   dict(use_temporal_links=False)], ids=str)
def test_other_link_kinds_run_their_xla_path_under_pallas(sizes):
  """Only the dense link has a Pallas step: the others trace as "xla"."""
  b, n, w, r, h = 2, 6, 3, 2, 1
  config = DNCConfig(output_size=1, memory_size=n, word_size=w, num_reads=r,
                     num_writes=h, **sizes)
  rng = np.random.default_rng(8)
  iface = random_interface(rng, b, r, h, w,
                           links=config.use_temporal_links)
  state = initial_access_state(config, b, jnp.float64)
  k = sizes["link_sparsity"] if sizes.get("link_storage") == "dense" else None
  trace = lambda backend_: str(jax.make_jaxpr(
      lambda i, s: memory_step(i, s, link_sparsity=k, backend=backend_))(
          iface, state))
  assert trace("pallas") == trace("xla")


def dnc_loss(memory_backend):
  config = DNCConfig(output_size=2, memory_size=6, word_size=3, num_reads=2,
                     num_writes=1, hidden_size=8,
                     memory_backend=memory_backend)

  def fn(x):
    core = DNC(config)
    return hk.dynamic_unroll(core, x,
                             core.initial_state(x.shape[1], x.dtype))[0]

  model = hk.without_apply_rng(hk.transform(fn))
  return model, (lambda p, x: jnp.sum(jnp.sin(model.apply(p, x))))


def test_dnc_unrolled_under_pallas_equals_xla():
  x = jnp.asarray(np.random.default_rng(6).normal(size=(3, 2, 4)))
  model, loss_xla = dnc_loss("xla")
  _, loss_pallas = dnc_loss("pallas")
  params = jax.jit(model.init)(jax.random.PRNGKey(0), x)
  want, grad_want = jax.jit(jax.value_and_grad(loss_xla))(params, x)
  got, grad_got = jax.jit(jax.value_and_grad(loss_pallas))(params, x)
  np.testing.assert_allclose(got, want, atol=1e-12, rtol=0)
  for g, w in zip(jax.tree.leaves(grad_got), jax.tree.leaves(grad_want)):
    np.testing.assert_allclose(g, w, atol=1e-11, rtol=0)


def lowered_dnc_grad(memory_backend, platform):
  model, loss = dnc_loss(memory_backend)
  x = jax.ShapeDtypeStruct((2, 1, 4), jnp.float32)
  params = jax.eval_shape(model.init, jax.random.PRNGKey(0), x)
  return jax.jit(jax.grad(loss)).trace(params, x).lower(
      lowering_platforms=(platform,)).as_text()


def test_pallas_lowers_no_custom_call_on_cpu_and_triton_for_cuda():
  # On the CPU: interpret mode, plain XLA operations, no CPU kernel.
  assert "custom_call" not in lowered_dnc_grad("pallas", "cpu")
  # For a GPU (lowered here, not run): the forward and backward kernels as
  # Triton calls; the XLA backend has none.
  cuda = lowered_dnc_grad("pallas", "cuda")
  assert "dnc_link_step_forward" in cuda and "dnc_link_step_backward" in cuda
  assert "triton" in cuda
  assert "dnc_link_step" not in lowered_dnc_grad("xla", "cuda")
