"""The examples in docs/ run as written."""

import os
import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_embedding_example_runs_and_trains():
  text = (ROOT / "docs" / "embedding.md").read_text()
  blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
  assert len(blocks) == 1
  # A fresh interpreter: not the tests' float64 mode. Record the first loss
  # too, to see that training under jit lowers it.
  code = blocks[0].replace(
      "for step in range(20):",
      "first = float(loss_fn(params, tokens, labels))\nfor step in range(20):")
  code += "\nprint(f'first {first:.4f}')\n"
  result = subprocess.run([sys.executable, "-c", code], cwd=ROOT,
                          capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
  assert result.returncode == 0, result.stderr
  last = float(re.search(r"loss (\d+\.\d{4})", result.stdout).group(1))
  first = float(re.search(r"first (\d+\.\d{4})", result.stdout).group(1))
  assert last < first, result.stdout


def test_maths_sections_cited_in_code_exist():
  maths = (ROOT / "docs" / "maths.md").read_text()
  sections = set(re.findall(r"^## (\d+)\.", maths, flags=re.M))
  cited = set()
  for path in list((ROOT / "dnc_jax").rglob("*.py")) + list(
      (ROOT / "tests").glob("*.py")):
    for match in re.finditer(r"maths\.md`*\s*§(\d+)(?:-(\d+))?",
                             path.read_text()):
      cited.update(x for x in match.groups() if x)
  assert cited and cited <= sections, cited - sections
