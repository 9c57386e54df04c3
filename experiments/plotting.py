"""Pictures of a DNC at work, as the paper draws them.

:func:`record` runs a trained model on a batch and keeps, for one example,
every step's interface and memory state; :func:`plot_memory` draws write and
read weightings over time, read modes, usage, the gates and the final link
matrix; :func:`plot_sequences` draws inputs, targets and outputs.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import jax
import numpy as np

from dnc_jax import DNCConfig, links
from experiments.models import recording_dnc


@dataclasses.dataclass
class Recording:
  """One example's run; time is the leading axis ``T`` of every array.

  Attributes:
    inputs: ``[T, X]``; targets ``[T, Y]``; mask ``[T]``.
    outputs: ``[T, Y]`` sigmoid of the logits.
    write_weights: ``[T, H, N]``.
    read_weights: ``[T, R, N]``.
    usage: ``[T, N]``.
    read_modes: ``[T, R, 1 + 2H]`` (``None`` without temporal links).
    free_gates: ``[T, R]``; allocation_gates, write_gates ``[T, H]``.
    link: ``[H, N, N]`` after the last step shown (``None`` without links or
      with the indexed sparse link, which is drawn densely when present).
  """

  inputs: np.ndarray
  targets: np.ndarray
  mask: np.ndarray
  outputs: np.ndarray
  write_weights: np.ndarray
  read_weights: np.ndarray
  usage: np.ndarray
  read_modes: Optional[np.ndarray]
  free_gates: np.ndarray
  allocation_gates: np.ndarray
  write_gates: np.ndarray
  link: Optional[np.ndarray]


def record(config: DNCConfig, params, batch, example: int = 0) -> Recording:
  """Runs ``batch`` through the DNC and keeps example ``example``.

  Steps after the example's last target step (padding) are dropped.
  """
  model = recording_dnc(config)
  logits, interface, states = jax.jit(model.apply)(params, batch.inputs)
  mask = np.asarray(batch.mask[:, example])
  end = int(np.nonzero(mask)[0].max()) + 1 if mask.any() else mask.shape[0]
  pick = lambda x: None if x is None else np.asarray(x[:end, example])
  access = states.access_state
  dense = links.dense_view(jax.tree.map(lambda x: x[end - 1, example],
                                        access.linkage))
  link = None if dense is None else np.asarray(dense)
  return Recording(
      inputs=pick(batch.inputs), targets=pick(batch.targets),
      mask=mask[:end], outputs=np.asarray(jax.nn.sigmoid(logits))[:end,
                                                                  example],
      write_weights=pick(access.write_weights),
      read_weights=pick(access.read_weights), usage=pick(access.usage),
      read_modes=pick(interface.read_modes),
      free_gates=pick(interface.free_gates),
      allocation_gates=pick(interface.allocation_gates),
      write_gates=pick(interface.write_gates), link=link)


def _heatmap(ax, values, title, ylabel="slot"):
  image = ax.imshow(values, aspect="auto", origin="lower", cmap="viridis",
                    interpolation="nearest", vmin=0.0,
                    vmax=max(1e-6, float(np.max(values))))
  ax.set_title(title, fontsize=9)
  ax.set_ylabel(ylabel, fontsize=8)
  ax.tick_params(labelsize=7)
  return image


def plot_memory(rec: Recording, path=None, title: str = ""):
  """Weightings, usage, gates and read modes over time; the final link.

  Returns the matplotlib figure; writes it to ``path`` (PNG) when given.
  """
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  num_writes = rec.write_weights.shape[1]
  num_reads = rec.read_weights.shape[1]
  rows = num_writes + num_reads + 3 + (rec.read_modes is not None)
  fig = plt.figure(figsize=(12, 1.7 * rows + 1))
  grid = fig.add_gridspec(rows, 4)
  series = fig.add_subplot(grid[0, :3])
  series.imshow(np.concatenate([rec.inputs.T, rec.targets.T * 0.5]),
                aspect="auto", origin="lower", cmap="Greys",
                interpolation="nearest")
  series.set_title("inputs (top) and targets (bottom)", fontsize=9)
  series.tick_params(labelsize=7)
  row = 1
  for h in range(num_writes):
    _heatmap(fig.add_subplot(grid[row, :3]), rec.write_weights[:, h].T,
             f"write weighting, head {h}")
    row += 1
  for r in range(num_reads):
    _heatmap(fig.add_subplot(grid[row, :3]), rec.read_weights[:, r].T,
             f"read weighting, head {r}")
    row += 1
  _heatmap(fig.add_subplot(grid[row, :3]), rec.usage.T, "usage")
  row += 1
  gates = fig.add_subplot(grid[row, :3])
  steps = np.arange(rec.usage.shape[0])
  for r in range(num_reads):
    gates.plot(steps, rec.free_gates[:, r], label=f"free gate {r}")
  for h in range(num_writes):
    gates.plot(steps, rec.allocation_gates[:, h], "--",
               label=f"allocation gate {h}")
    gates.plot(steps, rec.write_gates[:, h], ":", label=f"write gate {h}")
  gates.set_ylim(-0.05, 1.05)
  gates.set_title("gates", fontsize=9)
  gates.legend(fontsize=6, ncol=4, loc="upper right")
  gates.tick_params(labelsize=7)
  row += 1
  if rec.read_modes is not None:
    modes = fig.add_subplot(grid[row, :3])
    h = num_writes
    for r in range(num_reads):
      m = rec.read_modes[:, r]
      modes.plot(steps, m[:, :h].sum(-1), color=f"C{r}", ls="--",
                 label=f"backward {r}")
      modes.plot(steps, m[:, h], color=f"C{r}", ls="-", label=f"content {r}")
      modes.plot(steps, m[:, h + 1:].sum(-1), color=f"C{r}", ls=":",
                 label=f"forward {r}")
    modes.set_ylim(-0.05, 1.05)
    modes.set_title("read modes", fontsize=9)
    modes.legend(fontsize=6, ncol=3, loc="upper right")
    modes.tick_params(labelsize=7)
  if rec.link is not None:
    for h in range(num_writes):
      ax = fig.add_subplot(grid[1 + h * 2:3 + h * 2, 3])
      _heatmap(ax, rec.link[h], f"link matrix, head {h}, last step",
               ylabel="written after (i)")
      ax.set_xlabel("slot j", fontsize=8)
  out = fig.add_subplot(grid[rows - 2:, 3])
  out.imshow(np.concatenate([rec.targets.T, rec.outputs.T]), aspect="auto",
             origin="lower", cmap="Greys", interpolation="nearest")
  out.set_title("targets (bottom) / outputs (top)", fontsize=9)
  out.tick_params(labelsize=7)
  if title:
    fig.suptitle(title, fontsize=11)
  fig.tight_layout()
  if path is not None:
    fig.savefig(path, dpi=110)
  return fig
