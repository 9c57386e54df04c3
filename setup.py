"""Builds the C++ CPU kernels into the package at install time.

``pip install .`` and ``pip wheel .`` run ``build_py``; after copying the
package this compiles ``dnc_jax/csrc`` exactly as ``dnc_jax.cpu_kernels``
would on first use, into ``dnc_jax/_kernels/dnc_kernels.so``, with a
``build_info.json`` recording the sources, the jax/jaxlib versions whose FFI
headers it was built against and the processor (``-march=native``). At run
time the library is used only when that record matches; otherwise the
kernels are built on first use into the cache. So a wheel built here runs
its kernels here; elsewhere it is a pure-Python wheel that builds them
there. For the record to match, build with the jax the runtime will use:
``pip wheel --no-build-isolation .`` in the target environment (CI does), or
let build isolation pick the newest jax allowed by ``pyproject.toml``.

Where no compiler exists (or ``DNC_JAX_SKIP_KERNEL_BUILD`` is set) the build
only warns. Editable installs skip it: they build on first use.
"""

import importlib.util
import json
import os
import pathlib

from setuptools import setup
from setuptools.command.build_py import build_py


def _cpu_kernels():
  """``dnc_jax/cpu_kernels.py`` alone (the package imports haiku)."""
  path = pathlib.Path(__file__).parent / "dnc_jax" / "cpu_kernels.py"
  spec = importlib.util.spec_from_file_location("_dnc_cpu_kernels", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


class BuildPyWithKernels(build_py):
  """``build_py``, then the kernels compiled into the built package."""

  def run(self):
    super().run()
    if getattr(self, "editable_mode", False):
      return
    if os.environ.get("DNC_JAX_SKIP_KERNEL_BUILD"):
      self.announce("dnc_jax: DNC_JAX_SKIP_KERNEL_BUILD set, not building "
                    "the kernels", level=2)
      return
    try:
      kernels = _cpu_kernels()
    except ImportError as error:  # No jax in the build environment.
      self.warn(f"dnc_jax: kernels not built at install time: {error}")
      return
    package = pathlib.Path(self.build_lib) / "dnc_jax"
    target = package / "_kernels"
    try:
      kernels.compile_library(target / kernels.SHIPPED_NAME,
                              source_dir=package / "csrc")
    except kernels.FusedKernelUnavailable as error:
      self.warn(f"dnc_jax: kernels not built at install time, they will be "
                f"built on first use: {error}")
      return
    info = kernels.build_info(source_dir=package / "csrc")
    (target / "build_info.json").write_text(json.dumps(info, indent=1))
    self.announce(f"dnc_jax: kernels built against jax {info['jax']}",
                  level=2)


setup(cmdclass={"build_py": BuildPyWithKernels})
