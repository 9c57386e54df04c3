"""The notebooks run top to bottom (at a small size) and show what they say.

After a notebook runs, the test executes one more cell in its kernel that
prints, as JSON, the figures the notebook showed (its own variables), and
checks them: notebook 02's perfect fraction is the pretrained model's
(measured again and as stored in the ``.npz``), notebook 01's weightings
are distributions. ``test_stored_outputs_are_clean`` checks the outputs
committed with the notebooks: no errors, the pictures there.
"""

import json
import pathlib

import nbclient
import nbformat
import pytest

from experiments import pretrained

ROOT = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
MODEL = ROOT / "notebooks" / "pretrained" / "dynamic_allocation_copy.npz"
_MARK = "NOTEBOOK-FIGURES "

# Printed in the kernel after the notebook ran: the figures it showed.
FIGURES = {
    "01_dnc_walkthrough.ipynb": """
import json
import numpy as np
modes = np.asarray(interface.read_modes)
print("NOTEBOOK-FIGURES " + json.dumps({
    "read_mode_sums": modes.sum(-1).ravel().tolist(),
    "read_mode_min": float(modes.min()),
    "eval_keys": sorted(summary["eval"]),
    "usage": [float(recording.usage.min()), float(recording.usage.max())],
    "write_sums": recording.write_weights.sum(-1).ravel().tolist(),
    "read_sums": recording.read_weights.sum(-1).ravel().tolist(),
    "steps": len(recording.write_weights),
}))
""",
    "02_dynamic_allocation.ipynb": """
import json
print("NOTEBOOK-FIGURES " + json.dumps({
    "evaluation": evaluation, "stored": stored,
    "distinct_slots": len(set(written.tolist())),
    "slots": config.memory_size,
    "eval_keys": sorted(summary["eval"]),
}))
""",
}


def test_there_are_notebooks():
  assert len(NOTEBOOKS) >= 2
  assert {p.name for p in NOTEBOOKS} == set(FIGURES)


def _errors(notebook):
  return [output for cell in notebook.cells if cell.cell_type == "code"
          for output in cell.get("outputs", [])
          if output.get("output_type") == "error"]


def _run(path):
  """Executes ``path`` and then its figures cell; the figures."""
  notebook = nbformat.read(path, as_version=4)
  notebook.cells.append(nbformat.v4.new_code_cell(FIGURES[path.name]))
  client = nbclient.NotebookClient(
      notebook, timeout=600, kernel_name="python3",
      resources={"metadata": {"path": str(ROOT)}})
  client.execute()
  assert not _errors(notebook)
  text = "".join(output.get("text", "")
                 for output in notebook.cells[-1].get("outputs", [])
                 if output.get("output_type") == "stream")
  lines = [line for line in text.splitlines() if line.startswith(_MARK)]
  assert len(lines) == 1, text
  return json.loads(lines[0][len(_MARK):])


@pytest.fixture(scope="module")
def figures():
  cache = {}

  def get(name, monkeypatch):
    if name not in cache:
      monkeypatch.setenv("DNC_NOTEBOOK_STEPS", "30")
      cache[name] = _run(ROOT / "notebooks" / name)
    return cache[name]

  return get


def test_walkthrough_shows_distributions(figures, monkeypatch):
  shown = figures("01_dnc_walkthrough.ipynb", monkeypatch)
  assert shown["read_mode_sums"] == pytest.approx(
      [1.0] * len(shown["read_mode_sums"]), abs=1e-5)
  assert shown["read_mode_min"] >= 0
  low, high = shown["usage"]
  assert 0 <= low <= high <= 1 + 1e-6
  assert shown["steps"] > 0
  # Write and read weightings: each at most one slot's worth in all.
  assert max(shown["write_sums"]) <= 1 + 1e-5
  assert max(shown["read_sums"]) <= 1 + 1e-5
  assert min(shown["read_sums"]) >= 0
  assert {"valid/perfect", "valid/bit_errors"} <= set(shown["eval_keys"])


@pytest.mark.slow
def test_allocation_notebook_shows_the_models_figures(figures, monkeypatch):
  shown = figures("02_dynamic_allocation.ipynb", monkeypatch)
  evaluation, stored = shown["evaluation"], shown["stored"]
  # What the README and the notebook claim: every one of 100 seeded
  # episodes copied perfectly, also at twice the trained length.
  assert (evaluation["batch_size"], evaluation["seed"]) == (100, 0)
  assert evaluation["perfect"] == 1.0
  assert evaluation["longer_perfect"] >= 0.95
  # The file's stored figures are what the notebook measures.
  assert stored == pretrained.load_meta(MODEL)["evaluation"]
  for key in ("perfect", "bit_errors", "longer_perfect",
              "longer_bit_errors"):
    assert evaluation[key] == pytest.approx(stored[key], abs=1e-6), key
  # Re-used memory: ~50 vectors written into at most the 10 slots.
  assert shown["distinct_slots"] <= shown["slots"] == 10
  assert {"valid/perfect", "valid/bit_errors"} <= set(shown["eval_keys"])


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_stored_outputs_are_clean(path):
  """The committed outputs: every code cell ran, no errors, pictures."""
  notebook = nbformat.read(path, as_version=4)
  code = [cell for cell in notebook.cells if cell.cell_type == "code"]
  assert all(cell.get("execution_count") for cell in code)
  assert not _errors(notebook)
  images = [output for cell in code for output in cell.get("outputs", [])
            if "image/png" in output.get("data", {})]
  assert images
