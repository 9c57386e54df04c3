"""An independent NumPy float64 reference of docs/maths.md §2-4, per example.

Written from the equations with explicit loops, deliberately unlike the
vectorised library code, so that the two can disagree. Shapes are per example
(no batch axis): N slots, W word size, R read heads, H write heads.
Read modes use the library's layout [backward × H, content, forward × H].
"""

import numpy as np

EPS = 1e-6


def norm(x):
  return np.sqrt(np.sum(x * x) + EPS)


def content(memory, keys, strengths):
  """memory [N, W], keys [K, W], strengths [K] -> [K, N]."""
  n = memory.shape[0]
  out = np.zeros((keys.shape[0], n))
  for h in range(keys.shape[0]):
    scores = np.array([
        strengths[h] * (keys[h] @ memory[i]) / (norm(keys[h]) * norm(memory[i])
                                                + EPS) for i in range(n)])
    scores = np.exp(scores - scores.max())
    out[h] = scores / scores.sum()
  return out


def usage(prev_usage, prev_write, free, prev_read):
  """[N], [H, N], [R], [R, N] -> [N]."""
  written = 1.0 - np.prod([1.0 - prev_write[h] for h in range(len(prev_write))],
                          axis=0)
  u = prev_usage + written - prev_usage * written
  psi = np.ones_like(u)
  for r in range(len(free)):
    psi *= 1.0 - free[r] * prev_read[r]
  return u * psi


def allocation(u):
  """[N] -> [N]."""
  u = EPS + (1 - EPS) * u
  order = np.argsort(u, kind="stable")
  a = np.zeros_like(u)
  running = 1.0
  for j in order:
    a[j] = (1.0 - u[j]) * running
    running *= u[j]
  return a


def write_allocations(u, gates):
  """[N], [H] (allocation gate × write gate) -> [H, N]."""
  u = u.copy()
  out = []
  for h in range(len(gates)):
    a = allocation(u)
    out.append(a)
    u = u + (1 - u) * gates[h] * a
  return np.array(out)


def write_weighting(content_w, alloc, alloc_gate, write_gate):
  return np.array([write_gate[h] * (alloc_gate[h] * alloc[h]
                                    + (1 - alloc_gate[h]) * content_w[h])
                   for h in range(len(write_gate))])


def erase_write(memory, ww, erase, values):
  """[N, W], [H, N], [H, W], [H, W] -> [N, W]."""
  n, w = memory.shape
  out = memory.copy()
  for i in range(n):
    for c in range(w):
      keep = 1.0
      for h in range(ww.shape[0]):
        keep *= 1.0 - ww[h, i] * erase[h, c]
      out[i, c] = memory[i, c] * keep + sum(
          ww[h, i] * values[h, c] for h in range(ww.shape[0]))
  return out


def link(prev_link, prev_prec, ww):
  """One head: [N, N], [N], [N] -> [N, N]."""
  n = len(ww)
  out = np.zeros_like(prev_link)
  for i in range(n):
    for j in range(n):
      if i != j:
        out[i, j] = ((1 - ww[i] - ww[j]) * prev_link[i, j]
                     + ww[i] * prev_prec[j])
  return out


def precedence(prev_prec, ww):
  return (1 - ww.sum()) * prev_prec + ww


def top_k_normalise(w, k):
  keep = np.argsort(-w, kind="stable")[:k]
  out = np.zeros_like(w)
  total = w[keep].sum()
  if total > 0:
    out[keep] = w[keep] / total
  return out


def sparse_link(prev_link, prev_prec, ww, k):
  new = link(prev_link, top_k_normalise(prev_prec, k), top_k_normalise(ww, k))
  new[new < 1.0 / k] = 0.0
  return new


def step(iface, state, link_sparsity=None, use_links=True):
  """One memory step for one example.

  iface: dict of per-example arrays (keys as MemoryInterface's fields).
  state: dict memory [N,W], read_weights [R,N], write_weights [H,N],
    link [H,N,N], precedence [H,N], usage [N].
  Returns (read_words [R, W], new state dict).
  """
  h_count = state["write_weights"].shape[0]
  u = usage(state["usage"], state["write_weights"], iface["free_gates"],
            state["read_weights"])
  cw = content(state["memory"], iface["write_keys"], iface["write_strengths"])
  alloc = write_allocations(u, iface["allocation_gates"] * iface["write_gates"])
  ww = write_weighting(cw, alloc, iface["allocation_gates"],
                       iface["write_gates"])
  memory = erase_write(state["memory"], ww, iface["erase_vectors"],
                       iface["write_vectors"])
  cr = content(memory, iface["read_keys"], iface["read_strengths"])
  new = dict(memory=memory, write_weights=ww, usage=u)
  if use_links:
    links, precs = [], []
    for h in range(h_count):
      if link_sparsity is None:
        links.append(link(state["link"][h], state["precedence"][h], ww[h]))
      else:
        links.append(sparse_link(state["link"][h], state["precedence"][h],
                                 ww[h], link_sparsity))
      precs.append(precedence(state["precedence"][h], ww[h]))
    links = np.array(links)
    modes = iface["read_modes"]
    rw = np.zeros_like(cr)
    for r in range(cr.shape[0]):
      rw[r] = modes[r, h_count] * cr[r]
      for h in range(h_count):
        forward = links[h] @ state["read_weights"][r]
        backward = links[h].T @ state["read_weights"][r]
        rw[r] += modes[r, h] * backward + modes[r, h_count + 1 + h] * forward
    new.update(link=links, precedence=np.array(precs))
  else:
    rw = cr
  new["read_weights"] = rw
  return rw @ memory, new
