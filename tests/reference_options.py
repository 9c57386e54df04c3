"""NumPy float64 reference of the options of docs/maths.md §8, per example.

Extends ``reference.step`` with content masks, de-allocation and link
sharpness (Csordás & Schmidhuber, 2019), written from the equations with
explicit loops: the masked memory is formed row by row, and the sharpening
is the plain ratio of powers (no rescaling by the maximum).
"""

import numpy as np

import reference as ref

SHARPNESS_EPS = 1e-6


def masked_content(memory, keys, strengths, masks):
  """C(M ∘ 1mᵀ, k ∘ m, β) per head: [N, W], [K, W], [K], [K, W] -> [K, N]."""
  out = np.zeros((keys.shape[0], memory.shape[0]))
  for h in range(keys.shape[0]):
    masked_memory = np.array([row * masks[h] for row in memory])
    out[h] = ref.content(masked_memory, (keys[h] * masks[h])[None],
                         strengths[h:h + 1])[0]
  return out


def sharpen(d, s):
  """S(d, s)[i] = (d[i] + ε)^s / Σ_j (d[j] + ε)^s for one vector."""
  powered = np.array([(x + SHARPNESS_EPS) ** s for x in d])
  return powered / powered.sum()


def retention(free, prev_read):
  psi = np.ones(prev_read.shape[1])
  for r in range(len(free)):
    psi *= 1.0 - free[r] * prev_read[r]
  return psi


def step(iface, state, deallocation=False, link_sparsity=None,
         use_links=True):
  """One memory step for one example with the options the interface has.

  iface: dict as for ``reference.step``, plus ``read_masks`` [R, W] and
  ``write_masks`` [H, W] (or None) and ``link_sharpness`` [R, 2H] laid out
  [backward × H, forward × H] (or None). Returns (read_words, new state).
  """
  h_count = state["write_weights"].shape[0]
  u = ref.usage(state["usage"], state["write_weights"], iface["free_gates"],
                state["read_weights"])
  if iface.get("write_masks") is None:
    cw = ref.content(state["memory"], iface["write_keys"],
                     iface["write_strengths"])
  else:
    cw = masked_content(state["memory"], iface["write_keys"],
                        iface["write_strengths"], iface["write_masks"])
  alloc = ref.write_allocations(
      u, iface["allocation_gates"] * iface["write_gates"])
  ww = ref.write_weighting(cw, alloc, iface["allocation_gates"],
                           iface["write_gates"])
  prev_memory = state["memory"]
  if deallocation:
    psi = retention(iface["free_gates"], state["read_weights"])
    prev_memory = np.array([prev_memory[i] * psi[i]
                            for i in range(len(psi))])
  memory = ref.erase_write(prev_memory, ww, iface["erase_vectors"],
                           iface["write_vectors"])
  if iface.get("read_masks") is None:
    cr = ref.content(memory, iface["read_keys"], iface["read_strengths"])
  else:
    cr = masked_content(memory, iface["read_keys"], iface["read_strengths"],
                        iface["read_masks"])
  new = dict(memory=memory, write_weights=ww, usage=u)
  if not use_links:
    new["read_weights"] = cr
    return cr @ memory, new
  links, precs = [], []
  for h in range(h_count):
    if link_sparsity is None:
      links.append(ref.link(state["link"][h], state["precedence"][h], ww[h]))
    else:
      links.append(ref.sparse_link(state["link"][h], state["precedence"][h],
                                   ww[h], link_sparsity))
    precs.append(ref.precedence(state["precedence"][h], ww[h]))
  modes = iface["read_modes"]
  sharp = iface.get("link_sharpness")
  rw = np.zeros_like(cr)
  for r in range(cr.shape[0]):
    rw[r] = modes[r, h_count] * cr[r]
    for h in range(h_count):
      forward = links[h] @ state["read_weights"][r]
      backward = links[h].T @ state["read_weights"][r]
      if sharp is not None:
        backward = sharpen(backward, sharp[r, h])
        forward = sharpen(forward, sharp[r, h_count + h])
      rw[r] += modes[r, h] * backward + modes[r, h_count + 1 + h] * forward
  new.update(link=np.array(links), precedence=np.array(precs),
             read_weights=rw)
  return rw @ memory, new
