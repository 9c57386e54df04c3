"""Unrolling a core over time, optionally rematerialised in chunks.

Back-propagation through ``hk.dynamic_unroll`` keeps every step's residuals;
for a DNC that includes the ``N × N`` link matrix of every step, ``T·N²`` per
example, which is what exhausts memory first (``docs/maths.md`` §7). With
``remat_chunk=C`` the steps are grouped in chunks of ``C``: only the state
at each chunk's start is kept, and a chunk's steps are recomputed during the
backward pass. Memory falls to about ``T/C`` states plus ``C`` steps'
residuals; the cost is one more forward pass. Values and gradients are the
same as without it.

``scan_unroll=U`` places ``U`` steps in each iteration of the underlying
``lax.scan`` (as ``hk.dynamic_unroll``'s ``unroll``): the same values, fewer
loop iterations, more code to compile. Measure before using it
(``benchmarks.speed --scan-unrolls 1,4``): on an H200, compiling the
training step with ``U = 8`` took over 110 s (``U = 1``: 6 s).
"""

from __future__ import annotations

from typing import Any, Optional, Tuple

import haiku as hk
import jax
import jax.numpy as jnp


def _check_positive_int(name: str, value: Any, allowed: str = "an int >= 1"):
  if isinstance(value, bool) or not isinstance(value, int) or value < 1:
    raise ValueError(f"{name} must be {allowed}, got {value!r}")


def unroll(core: hk.RNNCore, inputs: jax.Array, initial_state: Any, *,
           remat_chunk: Optional[int] = None,
           scan_unroll: int = 1) -> Tuple[Any, Any]:
  """Runs ``core`` over time-major ``inputs``; call inside ``hk.transform``.

  Args:
    core: any ``hk.RNNCore`` (a :class:`~dnc_jax.DNC`).
    inputs: ``[T, B, ...]``, time-major.
    initial_state: the core's state for batch ``B``.
    remat_chunk: ``None`` unrolls as ``hk.dynamic_unroll`` does; an int
      ``C >= 1`` recomputes chunks of ``C`` steps in the backward pass.
      A final chunk shorter than ``C`` takes the remaining steps.
    scan_unroll: steps per iteration of the scan over time (within a chunk
      when ``remat_chunk`` is given); ``1`` loops step by step.
  Returns:
    ``(outputs [T, B, ...], final_state)``.
  """
  _check_positive_int("scan_unroll", scan_unroll)
  if remat_chunk is None:
    return hk.dynamic_unroll(core, inputs, initial_state, unroll=scan_unroll)
  _check_positive_int("remat_chunk", remat_chunk, "None or an int >= 1")
  steps = inputs.shape[0]
  chunks, remainder = divmod(steps, remat_chunk)

  @hk.remat
  def run_chunk(state, chunk_inputs):
    outputs, state = hk.dynamic_unroll(core, chunk_inputs, state,
                                       unroll=scan_unroll)
    return state, outputs

  state, pieces = initial_state, []
  if chunks:
    head = inputs[:chunks * remat_chunk].reshape(
        (chunks, remat_chunk) + inputs.shape[1:])
    if hk.running_init():
      # Parameters are created by the first step; hk.scan cannot create
      # them, so initialisation runs the chunks one by one (it is not
      # differentiated and runs once).
      outs = []
      for c in range(chunks):
        state, out = run_chunk(state, head[c])
        outs.append(out)
      stacked = jax.tree.map(lambda *x: jnp.stack(x), *outs)
    else:
      state, stacked = hk.scan(run_chunk, state, head)
    pieces.append(jax.tree.map(
        lambda x: x.reshape((chunks * remat_chunk,) + x.shape[2:]), stacked))
  if remainder:
    state, tail = run_chunk(state, inputs[chunks * remat_chunk:])
    pieces.append(tail)
  outputs = jax.tree.map(lambda *x: jnp.concatenate(x), *pieces)
  return outputs, state
