"""Building and loading the C++ CPU kernels of ``dnc_jax/csrc``.

The kernels (the fused memory step of :mod:`dnc_jax.fused`, the row sorts of
:mod:`dnc_jax.sorting`, the indexed sparse link of
:mod:`dnc_jax.links.indexed`) are compiled on first use with the system's C++
compiler against the XLA FFI headers that ship with jaxlib, for this
machine's processor, and cached (``$DNC_JAX_CACHE`` or ``~/.cache/dnc_jax``)
under a name that hashes the sources, compiler, flags, jax version and CPU
features. They are registered with ``jax.ffi`` for the CPU platform only.
Where no compiler is found, or ``DNC_JAX_DISABLE_FUSED`` is set, the library
warns once and uses XLA for everything.

A non-editable install (``pip install .``, a wheel) compiles the kernels at
build time where a compiler exists (``setup.py``) into ``_kernels/`` beside
this file, with a ``build_info.json`` recording what they were built against.
That library is loaded first, but only when the record matches this runtime
exactly: the sources, the jax and jaxlib versions (the FFI ABI) and the
processor's features (``-march=native``: a wheel built on one machine is
meant for that machine). Otherwise the kernels are built on first use into
the cache as above.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import json
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
SHIPPED_DIR = pathlib.Path(__file__).parent / "_kernels"
SHIPPED_NAME = "dnc_kernels.so"
TARGETS = (
    "DncMemoryStepForwardF32", "DncMemoryStepForwardF64",
    "DncMemoryStepBackwardF32", "DncMemoryStepBackwardF64",
    "DncArgsortF32", "DncArgsortF64", "DncTopKF32", "DncTopKF64",
    "DncSparseReadOutF32", "DncSparseReadOutF64", "DncSparseReadOutVjpF32",
    "DncSparseReadOutVjpF64", "DncSparseLinkUpdateF32",
    "DncSparseLinkUpdateF64", "DncSparseLinkUpdateVjpF32",
    "DncSparseLinkUpdateVjpF64", "DncSparseLinkStepF32",
    "DncSparseLinkStepF64", "DncSparseLinkStepVjpF32",
    "DncSparseLinkStepVjpF64",
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


def _jaxlib_version() -> str:
  try:
    import jaxlib  # pylint: disable=import-outside-toplevel
    return jaxlib.__version__
  except (ImportError, AttributeError):
    return "unknown"


def _source_hash(source_dir: pathlib.Path = SOURCE_DIR) -> str:
  key = hashlib.sha256()
  for path in sorted(source_dir.glob("*.[ch]*")):
    key.update(path.name.encode() + path.read_bytes())
  return key.hexdigest()


def build_info(source_dir: pathlib.Path = SOURCE_DIR) -> dict:
  """What a built library depends on; a shipped one must match it exactly."""
  return {"sources": _source_hash(source_dir), "jax": jax.__version__,
          "jaxlib": _jaxlib_version(), "flags": " ".join(_FLAGS),
          "cpu": _cpu_signature()}


def compile_library(output: pathlib.Path,
                    source_dir: pathlib.Path = SOURCE_DIR) -> pathlib.Path:
  """Compiles the kernels of ``source_dir`` into ``output`` (atomically)."""
  cxx = compiler()
  if cxx is None:
    raise FusedKernelUnavailable("no C++ compiler found (set CXX)")
  sources = sorted(source_dir.glob("*.cc"))
  output.parent.mkdir(parents=True, exist_ok=True)
  # Build beside the target and rename: concurrent builders (pytest-xdist,
  # several runs) never see a half-written library.
  with tempfile.TemporaryDirectory(dir=output.parent) as scratch:
    partial = pathlib.Path(scratch) / output.name
    command = [cxx, *_flags(), "-isystem", jax.ffi.include_dir(),
               *[str(s) for s in sources], "-o", str(partial)]
    try:
      result = subprocess.run(command, capture_output=True, text=True)
    except OSError as error:
      raise FusedKernelUnavailable(f"running {cxx} failed: {error}") from error
    if result.returncode != 0:
      raise FusedKernelUnavailable(
          f"compiling the CPU kernels failed:\n{' '.join(command)}\n"
          f"{result.stderr[-4000:]}")
    os.replace(partial, output)
  return output


def shipped() -> Optional[pathlib.Path]:
  """The library built at install time, if it matches this runtime."""
  library = SHIPPED_DIR / SHIPPED_NAME
  try:
    recorded = json.loads((SHIPPED_DIR / "build_info.json").read_text())
  except (OSError, ValueError):
    return None
  if not library.exists() or recorded != build_info():
    return None
  return library


def build(force: bool = False) -> pathlib.Path:
  """Compiles the kernels (or finds them cached); returns the library.

  The sources are copied first and the copy is both hashed and compiled,
  so a library is never cached under the key of sources that changed while
  it was being built.
  """
  cxx = compiler()
  if cxx is None:
    raise FusedKernelUnavailable("no C++ compiler found (set CXX)")
  cache = _cache_dir()
  cache.mkdir(parents=True, exist_ok=True)
  with tempfile.TemporaryDirectory(dir=cache) as snapshot:
    sources = pathlib.Path(snapshot)
    for path in SOURCE_DIR.glob("*.[ch]*"):
      shutil.copyfile(path, sources / path.name)
    key = hashlib.sha256()
    for part in (_source_hash(sources), cxx, jax.ffi.include_dir(),
                 jax.__version__, " ".join(_flags()), _cpu_signature()):
      key.update(part.encode())
    library = cache / f"dnc_kernels-{key.hexdigest()[:16]}.so"
    if library.exists() and not force:
      return library
    return compile_library(library, sources)


@functools.lru_cache(maxsize=None)
def library_path() -> pathlib.Path:
  """The library the kernels load from: the shipped one, else the cache's.

  A sanitizer build (``DNC_JAX_KERNEL_SANITIZE``) never uses the shipped
  library.
  """
  if os.environ.get("DNC_JAX_KERNEL_SANITIZE"):
    return build()
  return shipped() or build()


@functools.lru_cache(maxsize=None)
def _load() -> bool:
  library = ctypes.cdll.LoadLibrary(str(library_path()))
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
