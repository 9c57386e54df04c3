"""The README's code runs as written and its commands name what exists."""

import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def python_blocks():
  return re.findall(r"```python\n(.*?)```", README, flags=re.S)


def test_readme_example_runs_as_written():
  blocks = python_blocks()
  assert blocks, "README has no python example"
  # A fresh interpreter: the example must not rely on the tests' float64 mode.
  result = subprocess.run([sys.executable, "-c", blocks[0]], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr
  assert re.search(r"loss \d+\.\d{4}", result.stdout), result.stdout


def test_ci_runs_the_readme_test_command():
  command = re.search(r"pip install -e '\.\[test\]' && (python -m pytest[^\n`]*)",
                      README).group(1)
  assert command in (ROOT / ".ci" / "run").read_text()
