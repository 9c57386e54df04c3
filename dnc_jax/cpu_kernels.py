"""Building and loading the C++ CPU kernels of ``dnc_jax/csrc``.

The kernels (the fused memory step of :mod:`dnc_jax.fused`, the row sorts of
:mod:`dnc_jax.sorting`) are compiled on first use with the system's C++
compiler against the XLA FFI headers that ship with jaxlib, for this
machine's processor, and cached (``$DNC_JAX_CACHE`` or ``~/.cache/dnc_jax``)
under a name that hashes the sources, compiler, flags, jax version and CPU
features. They are registered with ``jax.ffi`` for the CPU platform only.
Where no compiler is found, or ``DNC_JAX_DISABLE_FUSED`` is set, the library
warns once and uses XLA for everything.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import pathlib
import platform
import shutil
import subprocess
import tempfile
import warnings
from typing import Optional

import jax

SOURCE_DIR = pathlib.Path(__file__).parent / "csrc"
TARGETS = (
    "DncMemoryStepForwardF32", "DncMemoryStepForwardF64",
    "DncMemoryStepBackwardF32", "DncMemoryStepBackwardF64",
    "DncArgsortF32", "DncArgsortF64", "DncTopKF32", "DncTopKF64",
    "DncSparseReadOutF32", "DncSparseReadOutF64", "DncSparseReadOutVjpF32",
    "DncSparseReadOutVjpF64", "DncSparseLinkUpdateF32",
    "DncSparseLinkUpdateF64", "DncSparseLinkUpdateVjpF32",
    "DncSparseLinkUpdateVjpF64",
)
_FLAGS = ["-std=c++17", "-O3", "-fPIC", "-shared", "-fopenmp-simd",
          "-march=native", "-fno-math-errno"]
# DNC_JAX_KERNEL_SANITIZE=address: a debug build under AddressSanitizer, for
# testing only (docs/kernels.md says how to run it); cached apart.
_SANITIZE = {"address": ["-fsanitize=address", "-fno-omit-frame-pointer",
                         "-O1", "-g"]}


def _flags() -> list:
  sanitize = os.environ.get("DNC_JAX_KERNEL_SANITIZE", "")
  if sanitize and sanitize not in _SANITIZE:
    raise FusedKernelUnavailable(
        f"DNC_JAX_KERNEL_SANITIZE={sanitize!r}: expected one of "
        f"{sorted(_SANITIZE)}")
  return _FLAGS + _SANITIZE.get(sanitize, [])


class FusedKernelUnavailable(RuntimeError):
  """The CPU kernels could not be built or loaded on this machine."""


def _cache_dir() -> pathlib.Path:
  if "DNC_JAX_CACHE" in os.environ:
    return pathlib.Path(os.environ["DNC_JAX_CACHE"])
  base = os.environ.get("XDG_CACHE_HOME", pathlib.Path.home() / ".cache")
  return pathlib.Path(base) / "dnc_jax"


def compiler() -> Optional[str]:
  """The C++ compiler the kernels are built with, if any (``$CXX`` first)."""
  for name in (os.environ.get("CXX"), "g++", "c++", "clang++"):
    if name and shutil.which(name):
      return shutil.which(name)
  return None


def _cpu_signature() -> str:
  """What ``-march=native`` depends on: the processor's feature flags."""
  try:
    for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
      if line.startswith(("flags", "Features")):
        return line
  except OSError:
    pass
  return platform.processor() or platform.machine()


def build(force: bool = False) -> pathlib.Path:
  """Compiles the kernels (or finds them cached); returns the library."""
  cxx = compiler()
  if cxx is None:
    raise FusedKernelUnavailable("no C++ compiler found (set CXX)")
  include = jax.ffi.include_dir()
  sources = sorted(SOURCE_DIR.glob("*.cc"))
  key = hashlib.sha256()
  for path in sorted(SOURCE_DIR.glob("*.[ch]*")):
    key.update(path.name.encode() + path.read_bytes())
  for part in (cxx, include, jax.__version__, " ".join(_flags()),
               _cpu_signature()):
    key.update(part.encode())
  cache = _cache_dir()
  library = cache / f"dnc_kernels-{key.hexdigest()[:16]}.so"
  if library.exists() and not force:
    return library
  cache.mkdir(parents=True, exist_ok=True)
  # Build beside the target and rename: concurrent builders (pytest-xdist,
  # several runs) never see a half-written library.
  with tempfile.TemporaryDirectory(dir=cache) as scratch:
    partial = pathlib.Path(scratch) / library.name
    command = [cxx, *_flags(), "-isystem", include,
               *[str(s) for s in sources], "-o", str(partial)]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
      raise FusedKernelUnavailable(
          f"compiling the CPU kernels failed:\n{' '.join(command)}\n"
          f"{result.stderr[-4000:]}")
    os.replace(partial, library)
  return library


@functools.lru_cache(maxsize=None)
def _load() -> bool:
  library = ctypes.cdll.LoadLibrary(str(build()))
  for name in TARGETS:
    jax.ffi.register_ffi_target(
        name, jax.ffi.pycapsule(getattr(library, name)), platform="cpu")
  return True


@functools.lru_cache(maxsize=None)
def available() -> bool:
  """Whether the kernels are built and registered (warns once if not)."""
  if os.environ.get("DNC_JAX_DISABLE_FUSED"):
    return False
  try:
    return _load()
  except (FusedKernelUnavailable, OSError, AttributeError) as error:
    warnings.warn(f"dnc_jax: the C++ CPU kernels are unavailable, using "
                  f"XLA instead: {error}", RuntimeWarning, stacklevel=3)
    return False
