"""An independent NumPy float64 reference of the interface and a DNC step.

Written from the paper's equations and Haiku's documented LSTM (gates
``i, g, f, o``, forget bias +1), not from the library's code; the memory
part is ``reference.py``'s explicit-loop step, one example at a time.
Parameters are plain dicts ``{"w": [in, out], "b": [out]}``.
"""

import numpy as np

import reference as ref


def softplus(x):
  return np.maximum(x, 0.0) + np.log1p(np.exp(-np.abs(x)))


def sigmoid(x):
  return 1.0 / (1.0 + np.exp(-x))


def softmax(x):
  e = np.exp(x - x.max(axis=-1, keepdims=True))
  return e / e.sum(axis=-1, keepdims=True)


def parse_interface(vector, r, h, w, links=True, squash="oneplus"):
  """One raw interface vector ``[S]`` -> dict of squashed fields.

  Layout (paper's Methods, with H write heads): read keys R·W, read
  strengths R, write keys H·W, write strengths H, erase H·W, write vectors
  H·W, free gates R, allocation gates H, write gates H, read modes
  R·(1 + 2H) (backward × H, content, forward × H).
  """
  fields = [("read_keys", r * w), ("read_strengths", r),
            ("write_keys", h * w), ("write_strengths", h),
            ("erase_vectors", h * w), ("write_vectors", h * w),
            ("free_gates", r), ("allocation_gates", h), ("write_gates", h)]
  if links:
    fields.append(("read_modes", r * (1 + 2 * h)))
  assert vector.shape == (sum(size for _, size in fields),), vector.shape
  raw, start = {}, 0
  for name, size in fields:
    raw[name] = vector[start:start + size]
    start += size
  strength = (lambda x: 1.0 + softplus(x)) if squash == "oneplus" else softplus
  out = dict(
      read_keys=raw["read_keys"].reshape(r, w),
      read_strengths=strength(raw["read_strengths"]),
      write_keys=raw["write_keys"].reshape(h, w),
      write_strengths=strength(raw["write_strengths"]),
      erase_vectors=sigmoid(raw["erase_vectors"]).reshape(h, w),
      write_vectors=raw["write_vectors"].reshape(h, w),
      free_gates=sigmoid(raw["free_gates"]),
      allocation_gates=sigmoid(raw["allocation_gates"]),
      write_gates=sigmoid(raw["write_gates"]),
      read_modes=None)
  if links:
    out["read_modes"] = np.stack(
        [softmax(raw["read_modes"][i * (1 + 2 * h):(i + 1) * (1 + 2 * h)])
         for i in range(r)])
  return out


def linear(p, x):
  return x @ p["w"] + p["b"]


def lstm(p, x, hidden, cell):
  """Haiku's LSTM: gates i, g, f, o of one linear map of [x, h]."""
  gates = linear(p, np.concatenate([x, hidden]))
  i, g, f, o = np.split(gates, 4)
  cell = sigmoid(f + 1.0) * cell + sigmoid(i) * np.tanh(g)
  hidden = sigmoid(o) * np.tanh(cell)
  return hidden, cell


def controller(kind, layers, x, state):
  """One example. ``layers``: list of linear params; ``state``: list of
  (hidden, cell) per LSTM layer ([] for feed-forward)."""
  if kind == "feedforward":
    for p in layers:
      x = np.tanh(linear(p, x))
    return x, []
  outputs, new_state, inputs = [], [], x
  for i, p in enumerate(layers):
    # Skip connections (deep LSTM): layer i > 0 sees [inputs, output i-1].
    layer_in = inputs if i == 0 else np.concatenate([inputs, outputs[-1]])
    hidden, cell = lstm(p, layer_in, *state[i])
    outputs.append(hidden)
    new_state.append((hidden, cell))
  # One layer: its output; several: every layer's output, concatenated.
  return np.concatenate(outputs), new_state


def dnc_step(params, config, x, state):
  """One DNC step for one example.

  params: dict with "controller" (list of linear params), "interface",
    "output". state: dict controller [(h, c)], read_words [R, W], access
    (reference.step's state dict). Returns (output, new state).
  """
  clip = config.clip_value
  clipped = (lambda v: np.clip(v, -clip, clip)) if clip > 0 else (lambda v: v)
  r, h, w = config.num_reads, config.num_writes, config.word_size
  ctrl_in = np.concatenate([x, state["read_words"].reshape(-1)])
  ctrl_out, ctrl_state = controller(config.controller, params["controller"],
                                    ctrl_in, state["controller"])
  ctrl_out = clipped(ctrl_out)
  ctrl_state = [(clipped(a), clipped(b)) for a, b in ctrl_state]
  iface = parse_interface(linear(params["interface"], ctrl_out), r, h, w,
                          config.use_temporal_links, config.strength_squash)
  words, access = ref.step(iface, state["access"], config.link_sparsity,
                           config.use_temporal_links)
  output = clipped(linear(params["output"],
                          np.concatenate([ctrl_out, words.reshape(-1)])))
  return output, dict(controller=ctrl_state, read_words=words, access=access)
