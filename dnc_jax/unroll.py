"""Unrolling a core over time, optionally rematerialised in chunks.

Back-propagation through ``hk.dynamic_unroll`` keeps every step's residuals;
for a DNC that includes the ``N × N`` link matrix of every step, ``T·N²`` per
example, which is what exhausts memory first (DESIGN 3). With
``remat_chunk=C`` the steps are grouped in chunks of ``C``: only the state
at each chunk's start is kept, and a chunk's steps are recomputed during the
backward pass. Memory falls to about ``T/C`` states plus ``C`` steps'
residuals; the cost is one more forward pass. Values and gradients are the
same as without it.
"""

from __future__ import annotations

from typing import Any, Optional, Tuple

import haiku as hk
import jax
import jax.numpy as jnp


def unroll(core: hk.RNNCore, inputs: jax.Array, initial_state: Any, *,
           remat_chunk: Optional[int] = None) -> Tuple[Any, Any]:
  """Runs ``core`` over time-major ``inputs``; call inside ``hk.transform``.

  Args:
    core: any ``hk.RNNCore`` (a :class:`~dnc_jax.DNC`).
    inputs: ``[T, B, ...]``, time-major.
    initial_state: the core's state for batch ``B``.
    remat_chunk: ``None`` unrolls as ``hk.dynamic_unroll`` does; an int
      ``C >= 1`` recomputes chunks of ``C`` steps in the backward pass.
      A final chunk shorter than ``C`` takes the remaining steps.
  Returns:
    ``(outputs [T, B, ...], final_state)``.
  """
  if remat_chunk is None:
    return hk.dynamic_unroll(core, inputs, initial_state)
  if isinstance(remat_chunk, bool) or not isinstance(remat_chunk, int) or (
      remat_chunk < 1):
    raise ValueError(f"remat_chunk must be None or an int >= 1, got "
                     f"{remat_chunk!r}")
  steps = inputs.shape[0]
  chunks, remainder = divmod(steps, remat_chunk)

  @hk.remat
  def run_chunk(state, chunk_inputs):
    outputs, state = hk.dynamic_unroll(core, chunk_inputs, state)
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
