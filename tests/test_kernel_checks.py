"""The C++ kernels check the buffers they are given (issue 11, item 1).

Each FFI target is called directly, bypassing the Python wrappers and their
own checks, with one operand's (or result's) shape wrong; the call must fail
with an error naming that operand, not read or write past a buffer. Every
target is also called once with correct shapes, so a check that refuses
everything fails here too.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dnc_jax import cpu_kernels

pytestmark = pytest.mark.skipif(cpu_kernels.compiler() is None,
                                reason="no C++ compiler for the CPU kernels")

F32 = np.float32


@pytest.fixture(scope="module", autouse=True)
def kernels():
  assert cpu_kernels.available(), "the kernels failed to build"


def call(target, args, results, **attrs):
  """Runs `target` on NumPy `args`; `results` are (shape, dtype) pairs."""
  out = jax.ffi.ffi_call(
      target, [jax.ShapeDtypeStruct(s, d) for s, d in results])(
          *[jnp.asarray(a) for a in args], **attrs)
  return jax.block_until_ready(out)


def zeros(*shape, dtype=F32):
  return np.zeros(shape, dtype)


def expect_error(target, args, results, pattern, **attrs):
  with pytest.raises(Exception, match=pattern):
    call(target, args, results, **attrs)


# --- the memory step ---------------------------------------------------------

B, N, W, R, H = 4, 6, 3, 2, 2
M = 1 + 2 * H
STEP_INPUTS = [  # name, shape with links
    ("read_keys", (B, R, W)), ("read_strengths", (B, R)),
    ("write_keys", (B, H, W)), ("write_strengths", (B, H)),
    ("erase", (B, H, W)), ("write_vectors", (B, H, W)),
    ("free_gates", (B, R)), ("allocation_gates", (B, H)),
    ("write_gates", (B, H)), ("read_modes", (B, R, M)),
    ("memory", (B, N, W)), ("read_weights", (B, R, N)),
    ("write_weights", (B, H, N)), ("link", (B, H, N, N)),
    ("precedence", (B, H, N)), ("usage", (B, N)),
]
STEP_OUTPUTS = [("read_words", (B, R, W))] + STEP_INPUTS[10:]
LINKS = np.int64(1)


def step_args(bad=None, shape=None):
  return [zeros(*(shape if name == bad else s)) for name, s in STEP_INPUTS]


def step_results(bad=None, shape=None, outputs=STEP_OUTPUTS):
  return [(shape if name == bad else s, F32) for name, s in outputs]


def test_memory_step_accepts_matching_shapes():
  words = call("DncMemoryStepForwardF32", step_args(), step_results(),
               links=LINKS)[0]
  assert words.shape == (B, R, W)
  grads = call("DncMemoryStepBackwardF32",
               step_args() + [zeros(*s) for _, s in STEP_OUTPUTS],
               step_results(outputs=STEP_INPUTS), links=LINKS)
  assert grads[-1].shape == (B, N)


def test_memory_step_refuses_a_batch_1_interface_on_a_batch_4_state():
  # The case: this used to read past the interface's buffers.
  args = [zeros(1, *s[1:]) if i < 10 else zeros(*s)
          for i, (_, s) in enumerate(STEP_INPUTS)]
  expect_error("DncMemoryStepForwardF32", args, step_results(),
               r"memory step: read_keys has shape \[1, 2, 3\], expected "
               r"\[4, 2, 3\]", links=LINKS)


@pytest.mark.parametrize("name,shape", STEP_INPUTS, ids=[
    n for n, _ in STEP_INPUTS])
def test_memory_step_names_the_operand_whose_shape_is_wrong(name, shape):
  # One more slot, or one more row where the operand has no slot axis.
  wrong = tuple(shape[:-1]) + (shape[-1] + 1,)
  if name in ("read_keys", "write_keys", "memory"):
    wrong = (B + 1,) + tuple(shape[1:])  # these set the dimensions
  # The first operand to disagree with memory [B, N, W], read_keys and
  # write_keys is named, with its shape and the one expected.
  pattern = rf"memory step: {name} has shape \[{', '.join(map(str, wrong))}\]"
  if name == "memory":
    pattern = r"memory step: read_keys has shape \[4, 2, 3\], expected \[5"
  expect_error("DncMemoryStepForwardF32", step_args(name, wrong),
               step_results(), pattern, links=LINKS)


def test_memory_step_checks_results_and_cotangents():
  expect_error("DncMemoryStepForwardF32", step_args(),
               step_results("read_words", (B, R, W + 1)),
               r"memory step: read_words \(result\) has shape \[4, 2, 4\], "
               r"expected \[4, 2, 3\]", links=LINKS)
  expect_error("DncMemoryStepForwardF32", step_args(),
               step_results("link", (B, H, N, N - 1)),
               r"link \(result\) has shape", links=LINKS)
  cotangents = [zeros(*s) for _, s in STEP_OUTPUTS]
  cotangents[0] = zeros(1, R, W)
  expect_error("DncMemoryStepBackwardF32", step_args() + cotangents,
               step_results(outputs=STEP_INPUTS),
               r"memory step VJP: g_read_words has shape \[1, 2, 3\], "
               r"expected \[4, 2, 3\]", links=LINKS)
  expect_error("DncMemoryStepBackwardF32",
               step_args() + [zeros(*s) for _, s in STEP_OUTPUTS],
               step_results("usage", (B, N + 1), STEP_INPUTS),
               r"memory step VJP: g_usage \(result\) has shape \[4, 7\]",
               links=LINKS)


def test_memory_step_without_links_wants_empty_link_arrays():
  # links=0: read modes [B, R, 0], link [B, H, 0, 0], precedence [B, H, 0].
  empty = {"read_modes": (B, R, 0), "link": (B, H, 0, 0),
           "precedence": (B, H, 0)}
  inputs = [(n, empty.get(n, s)) for n, s in STEP_INPUTS]
  outputs = [(n, empty.get(n, s)) for n, s in STEP_OUTPUTS]
  args = [zeros(*s) for _, s in inputs]
  call("DncMemoryStepForwardF32", args, [(s, F32) for _, s in outputs],
       links=np.int64(0))
  expect_error("DncMemoryStepForwardF32", step_args(),
               [(s, F32) for _, s in outputs],
               r"memory step: read_modes has shape \[4, 2, 5\], expected "
               r"\[4, 2, 0\]", links=np.int64(0))


def test_memory_step_refuses_empty_dimensions():
  args = step_args("read_keys", (B, 0, W))
  expect_error("DncMemoryStepForwardF32", args, step_results(),
               r"memory step: N, W, R and H must be at least 1; got N = 6, "
               r"W = 3, R = 0, H = 2", links=LINKS)


# --- the indexed sparse link -------------------------------------------------

K = 3
LINK = (B, H, N, K)


def update_args(**changes):
  args = dict(columns=np.zeros(LINK, np.int32), values=zeros(*LINK),
              precedence=zeros(B, H, N), write_weights=zeros(B, H, N))
  args.update(changes)
  return list(args.values())


def test_sparse_link_update_checks_shapes_and_k():
  results = [(LINK, np.int32), (LINK, F32)]
  call("DncSparseLinkUpdateF32", update_args(), results)
  expect_error("DncSparseLinkUpdateF32",
               update_args(values=zeros(B, H, N + 1, K)), results,
               r"sparse link update: values has shape \[4, 2, 7, 3\], "
               r"expected \[4, 2, 6, 3\]")
  expect_error("DncSparseLinkUpdateF32",
               update_args(precedence=zeros(1, H, N)), results,
               r"sparse link update: precedence has shape \[1, 2, 6\], "
               r"expected \[4, 2, 6\]")
  expect_error("DncSparseLinkUpdateF32",
               update_args(write_weights=zeros(B, H)), results,
               r"sparse link update: write_weights has shape \[4, 2\]")
  big = (B, H, 2, 3)  # K = 3 > N = 2
  expect_error("DncSparseLinkUpdateF32",
               [np.zeros(big, np.int32), zeros(*big), zeros(B, H, 2),
                zeros(B, H, 2)], [(big, np.int32), (big, F32)],
               r"sparse link update: K = 3 \(columns' last axis\) must be in "
               r"\[1, N = 2\]")
  expect_error("DncSparseLinkUpdateF32", update_args(),
               [(LINK, np.int32), ((B, H, N, K + 1), F32)],
               r"sparse link update: new_values \(result\) has shape")
  columns = np.zeros(LINK, np.int32)
  columns[1, 0, 2, 1] = -1
  expect_error("DncSparseLinkUpdateF32", update_args(columns=columns),
               results, r"sparse link update: a stored column is outside "
               r"\[0, N\): columns\[\d+\] \(flat\) = -1, N = 6")


def test_sparse_link_update_vjp_checks_shapes():
  results = [(LINK, F32), ((B, H, N), F32), ((B, H, N), F32)]
  call("DncSparseLinkUpdateVjpF32", update_args() + [zeros(*LINK)], results)
  expect_error("DncSparseLinkUpdateVjpF32",
               update_args() + [zeros(B, H, N, K - 1)], results,
               r"sparse link update VJP: g_new_values has shape "
               r"\[4, 2, 6, 2\], expected \[4, 2, 6, 3\]")
  expect_error("DncSparseLinkUpdateVjpF32", update_args() + [zeros(*LINK)],
               results[:2] + [((B, H, N - 1), F32)],
               r"sparse link update VJP: g_write_weights \(result\)")


def read_out_args(**changes):
  args = dict(columns=np.zeros(LINK, np.int32), values=zeros(*LINK),
              prev_read_weights=zeros(B, R, N), content=zeros(B, R, N),
              read_modes=zeros(B, R, M), memory=zeros(B, N, W))
  args.update(changes)
  return list(args.values())


READ_OUT_RESULTS = [((B, R, N), F32), ((B, R, W), F32)]


@pytest.mark.parametrize("name,shape,pattern", [
    ("columns", (B, H, N + 1, K), r"columns has shape \[4, 2, 7, 3\], "
     r"expected \[4, 2, 6, 3\]"),
    ("columns", (B, N, K), r"columns has shape \[4, 6, 3\], expected 4 axes"),
    ("values", (1, H, N, K), r"values has shape \[1, 2, 6, 3\]"),
    ("content", (B, R + 1, N), r"content has shape \[4, 3, 6\], expected "
     r"\[4, 2, 6\]"),
    ("read_modes", (B, R, M - 1), r"read_modes has shape \[4, 2, 4\], "
     r"expected \[4, 2, 5\]"),
    ("memory", (B, N - 1, W), r"memory has shape \[4, 5, 3\], expected "
     r"\[4, 6, 3\]"),
    ("memory", (N, W), r"memory has shape \[6, 3\], expected 3 axes"),
    ("prev_read_weights", (N,), r"prev_read_weights has shape \[6\], "
     r"expected at least 2 axes"),
])
def test_sparse_read_out_names_the_operand(name, shape, pattern):
  dtype = np.int32 if name == "columns" else F32
  args = read_out_args(**{name: np.zeros(shape, dtype)})
  expect_error("DncSparseReadOutF32", args, READ_OUT_RESULTS,
               "sparse link read-out: " + pattern)


def test_sparse_read_out_and_vjp_check_results_and_cotangents():
  call("DncSparseReadOutF32", read_out_args(), READ_OUT_RESULTS)
  expect_error("DncSparseReadOutF32", read_out_args(),
               [((B, R, N), F32), ((B, R, W + 2), F32)],
               r"sparse link read-out: read_words \(result\) has shape "
               r"\[4, 2, 5\], expected \[4, 2, 3\]")
  vjp_results = [(LINK, F32), ((B, R, N), F32), ((B, R, N), F32),
                 ((B, R, M), F32), ((B, N, W), F32)]
  good = read_out_args() + [zeros(B, R, N), zeros(B, R, W)]
  call("DncSparseReadOutVjpF32", good, vjp_results)
  expect_error("DncSparseReadOutVjpF32",
               read_out_args() + [zeros(B, R, N), zeros(B, 1, W)],
               vjp_results, r"sparse link read-out VJP: g_read_words has "
               r"shape \[4, 1, 3\], expected \[4, 2, 3\]")
  expect_error("DncSparseReadOutVjpF32", good,
               vjp_results[:4] + [((B, N, W + 1), F32)],
               r"sparse link read-out VJP: g_memory \(result\) has shape")


def link_step_args(**changes):
  """DncSparseLinkStep's operands: the update's, then the read-out's."""
  args = dict(columns=np.zeros(LINK, np.int32), values=zeros(*LINK),
              precedence=zeros(B, H, N), write_weights=zeros(B, H, N),
              prev_read_weights=zeros(B, R, N), content=zeros(B, R, N),
              read_modes=zeros(B, R, M), memory=zeros(B, N, W))
  args.update(changes)
  return list(args.values())


STEP_RESULTS = [(LINK, np.int32), (LINK, F32), ((B, R, N), F32),
                ((B, R, W), F32), (LINK, np.int32), ((B, H, 2, K), np.int32)]
STEP_GRADS = [(LINK, F32), ((B, H, N), F32), ((B, H, N), F32),
              ((B, R, N), F32), ((B, R, N), F32), ((B, R, M), F32),
              ((B, N, W), F32)]


def link_step_vjp_args(**changes):
  """The step's operands, its residuals, then the cotangents."""
  args = dict(new_columns=np.zeros(LINK, np.int32), new_values=zeros(*LINK),
              chosen=np.zeros(LINK, np.int32),
              tops=np.zeros((B, H, 2, K), np.int32), g_new_values=zeros(*LINK),
              g_read_weights=zeros(B, R, N), g_read_words=zeros(B, R, W))
  step = {name: changes.pop(name) for name in list(changes)
          if name not in args}
  args.update(changes)
  return link_step_args(**step) + list(args.values())


@pytest.mark.parametrize("name,shape,pattern", [
    ("values", (B, H, N, K + 1), r"values has shape \[4, 2, 6, 4\], "
     r"expected \[4, 2, 6, 3\]"),
    ("precedence", (B, H, N + 1), r"precedence has shape \[4, 2, 7\], "
     r"expected \[4, 2, 6\]"),
    ("write_weights", (B, 1, N), r"write_weights has shape \[4, 1, 6\]"),
    ("read_modes", (B, R, M + 1), r"read_modes has shape \[4, 2, 6\]"),
    ("memory", (B, N, W, 1), r"memory has shape \[4, 6, 3, 1\], expected "
     r"3 axes"),
])
def test_sparse_link_step_names_the_operand(name, shape, pattern):
  args = link_step_args(**{name: zeros(*shape)})
  expect_error("DncSparseLinkStepF32", args, STEP_RESULTS,
               "sparse link step: " + pattern)


def test_sparse_link_step_checks_results_k_and_columns():
  new_columns, _, read_weights, *_ = call("DncSparseLinkStepF32",
                                           link_step_args(), STEP_RESULTS)
  assert new_columns.shape == LINK and read_weights.shape == (B, R, N)
  for index, shape, name in [(4, (B, H, N, K + 1), "chosen"),
                             (5, (B, H, K, 2), "tops"),
                             (3, (B, R, W + 1), "read_words")]:
    results = list(STEP_RESULTS)
    results[index] = (shape, results[index][1])
    expect_error("DncSparseLinkStepF32", link_step_args(), results,
                 rf"sparse link step: {name} \(result\) has shape")
  big = (B, H, 2, 3)  # K = 3 > N = 2
  expect_error("DncSparseLinkStepF32",
               link_step_args(columns=np.zeros(big, np.int32),
                              values=zeros(*big), precedence=zeros(B, H, 2),
                              write_weights=zeros(B, H, 2),
                              prev_read_weights=zeros(B, R, 2),
                              content=zeros(B, R, 2), memory=zeros(B, 2, W)),
               STEP_RESULTS, r"sparse link step: K = 3 \(columns' last "
               r"axis\) must be in \[1, N = 2\]")
  for bad in (-1, N):
    columns = np.zeros(LINK, np.int32)
    columns[2, 1, 3, 0] = bad
    expect_error("DncSparseLinkStepF32", link_step_args(columns=columns),
                 STEP_RESULTS, r"sparse link step: a stored column is "
                 rf"outside \[0, N\): columns\[\d+\] \(flat\) = {bad}, N = 6")


def test_sparse_link_step_vjp_checks_shapes():
  grads = call("DncSparseLinkStepVjpF32", link_step_vjp_args(), STEP_GRADS)
  assert [g.shape for g in grads] == [s for s, _ in STEP_GRADS]
  expect_error("DncSparseLinkStepVjpF32",
               link_step_vjp_args(new_values=zeros(B, H, N, K + 1)),
               STEP_GRADS, r"sparse link step VJP: new_values has shape "
               r"\[4, 2, 6, 4\], expected \[4, 2, 6, 3\]")
  expect_error("DncSparseLinkStepVjpF32",
               link_step_vjp_args(g_read_words=zeros(B, R, W + 1)), STEP_GRADS,
               r"sparse link step VJP: g_read_words has shape")
  expect_error("DncSparseLinkStepVjpF32",
               link_step_vjp_args(tops=np.zeros((B, H, K), np.int32)),
               STEP_GRADS,
               r"sparse link step VJP: tops has shape")
  expect_error("DncSparseLinkStepVjpF32", link_step_vjp_args(),
               STEP_GRADS[:6] + [((B, N, W + 1), F32)],
               r"sparse link step VJP: g_memory \(result\) has shape")


@pytest.mark.parametrize("name,bad,pattern", [
    ("columns", N, r"a stored column is outside \[0, N\): columns"),
    ("new_columns", -1, r"a new column is outside \[0, N\): new_columns"),
    ("tops", N, r"a top-K index is outside \[0, N\): tops"),
    ("chosen", 2 * K, r"a chosen candidate is outside \[0, 2K\): chosen"),
    ("chosen", -1, r"a chosen candidate is outside \[0, 2K\): chosen"),
])
def test_sparse_link_step_vjp_refuses_out_of_range_indices(name, bad,
                                                           pattern):
  # The VJP reads its residuals as indices: a bad one (from a caller of
  # the raw target) is an error, never a read outside the buffers.
  shape = (B, H, 2, K) if name == "tops" else LINK
  indices = np.zeros(shape, np.int32)
  indices[1, 1, 1, 1] = bad
  expect_error("DncSparseLinkStepVjpF32",
               link_step_vjp_args(**{name: indices}), STEP_GRADS,
               r"sparse link step VJP: " + pattern)


# --- sorting -----------------------------------------------------------------


def test_sort_kernels_check_k_and_result_shapes():
  x = np.zeros((3, 10), F32)
  assert call("DncTopKF32", [x], [((3, 4), np.int32)],
              k=np.int64(4))[0].shape == (3, 4)
  for k in (0, 11):
    expect_error("DncTopKF32", [x], [((3, max(k, 1)), np.int32)],
                 rf"top_k: k = {k} must be in \[1, row length 10\]",
                 k=np.int64(k))
  expect_error("DncTopKF32", [x], [((3, 5), np.int32)],
               r"top_k: indices \(result\) has shape \[3, 5\], expected "
               r"\[3, 4\]", k=np.int64(4))
  expect_error("DncTopKF32", [np.zeros((), F32)], [((1,), np.int32)],
               r"top_k: x has shape \[\], expected at least 1 axes",
               k=np.int64(1))
  call("DncArgsortF32", [x], [((3, 10), np.int32)])
  expect_error("DncArgsortF32", [x], [((3, 11), np.int32)],
               r"argsort: order \(result\) has shape \[3, 11\], expected "
               r"\[3, 10\]")
  expect_error("DncArgsortF32", [x], [((10, 3), np.int32)],
               r"argsort: order \(result\) has shape \[10, 3\]")
