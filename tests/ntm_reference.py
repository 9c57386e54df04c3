"""An independent NumPy float64 reference of the NTM (docs/ntm.md).

One example at a time, with explicit loops and the equations written as the
2014 paper states them (``w̃^γ / Σ w̃^γ``, index arithmetic for the shift),
deliberately unlike the vectorised library code. Shapes are per example: N
slots, W word size, R read heads, H write heads, S shift range.
"""

import numpy as np

EPS = 1e-6            # the DNC's norm epsilon (addressing.NORM_EPSILON)
SHARPEN_EPS = 1e-8    # ntm.SHARPEN_EPSILON


def sigmoid(x):
  return 1.0 / (1.0 + np.exp(-x))


def softplus(x):
  return np.log1p(np.exp(x))


def content(memory, key, strength):
  """memory [N, W], key [W], strength scalar -> [N]."""
  def norm(x):
    return np.sqrt(np.sum(x * x) + EPS)
  n = memory.shape[0]
  scores = np.empty(n)
  for i in range(n):
    cosine = np.dot(key, memory[i]) / (norm(key) * norm(memory[i]) + EPS)
    scores[i] = strength * cosine
  e = np.exp(scores - scores.max())
  return e / e.sum()


def interpolate(content_w, prev_w, gate):
  """[N], [N], scalar -> [N]."""
  return gate * content_w + (1.0 - gate) * prev_w


def shift(w, shift_w):
  """w [N], shift_w [2S+1] (entry j is shift j - S) -> [N].

  w̃(i) = Σ_j w(j) s(i - j), s indexed by the offset modulo N.
  """
  n = len(w)
  s_range = (len(shift_w) - 1) // 2
  s_of_offset = np.zeros(n)
  for j, weight in enumerate(shift_w):
    s_of_offset[(j - s_range) % n] += weight
  out = np.zeros(n)
  for i in range(n):
    for j in range(n):
      out[i] += w[j] * s_of_offset[(i - j) % n]
  return out


def sharpen(w, gamma):
  """[N], scalar >= 1 -> [N]."""
  powered = (w + SHARPEN_EPS) ** gamma
  return powered / powered.sum()


def address(memory, prev_w, key, strength, gate, shift_w, gamma):
  """One head's weighting [N]."""
  w = interpolate(content(memory, key, strength), prev_w, gate)
  return sharpen(shift(w, shift_w), gamma)


def write(memory, write_w, erase, add):
  """memory [N, W], write_w [H, N], erase [H, W], add [H, W] -> [N, W].

  All heads erase (a product), then all heads add (a sum).
  """
  m = memory.copy()
  for h in range(len(write_w)):
    m = m * (1.0 - np.outer(write_w[h], erase[h]))
  for h in range(len(write_w)):
    m = m + np.outer(write_w[h], add[h])
  return m


def read(memory, read_w):
  """memory [N, W], read_w [R, N] -> [R, W]."""
  out = np.zeros((len(read_w), memory.shape[1]))
  for r in range(len(read_w)):
    for i in range(memory.shape[0]):
      out[r] += read_w[r, i] * memory[i]
  return out


def parse(vector, r, h, w, s):
  """Raw interface [(R+H)(W+3+2S+1) + 2HW] -> dict of squashed fields."""
  k, ns = r + h, 2 * s + 1
  pos = 0

  def take(size):
    nonlocal pos
    out = vector[pos:pos + size]
    pos += size
    return out

  keys = take(k * w).reshape(k, w)
  strengths = 1.0 + softplus(take(k))
  gates = sigmoid(take(k))
  shift_logits = take(k * ns).reshape(k, ns)
  shifts = np.exp(shift_logits - shift_logits.max(axis=1, keepdims=True))
  shifts /= shifts.sum(axis=1, keepdims=True)
  gammas = 1.0 + softplus(take(k))
  erase = sigmoid(take(h * w).reshape(h, w))
  add = take(h * w).reshape(h, w)
  assert pos == len(vector)
  return dict(keys=keys, strengths=strengths, gates=gates, shifts=shifts,
              sharpenings=gammas, erase_vectors=erase, add_vectors=add)


def step(interface, memory, read_w, write_w):
  """One memory step; read heads are the first R of each per-head field.

  Returns (memory [N, W], read_w [R, N], write_w [H, N], read_words [R, W]).
  """
  r = len(read_w)
  f = interface
  new_write = np.stack([
      address(memory, write_w[h], f["keys"][r + h], f["strengths"][r + h],
              f["gates"][r + h], f["shifts"][r + h], f["sharpenings"][r + h])
      for h in range(len(write_w))])
  memory = write(memory, new_write, f["erase_vectors"], f["add_vectors"])
  new_read = np.stack([
      address(memory, read_w[i], f["keys"][i], f["strengths"][i],
              f["gates"][i], f["shifts"][i], f["sharpenings"][i])
      for i in range(r)])
  return memory, new_read, new_write, read(memory, new_read)
