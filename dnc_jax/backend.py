"""The one place that decides whether the C++ CPU kernels are used.

Every kernel of the library (the fused memory step, the indexed sparse
link's step, update and read-out, the row sorts) asks :func:`use_kernels`
before it issues a custom call, and takes its target name from
:func:`target`.
The ``backend`` argument of the pure functions (and
``DNCConfig.memory_backend``) means the same everywhere:

* ``"xla"``: no custom call at all, on any platform; the lowered HLO holds
  only XLA operations.
* ``"auto"``: a kernel where one applies (float32/float64 operands, kernels
  built); ``jax.lax.platform_dependent`` keeps the kernel for the CPU and
  the XLA composition for every other platform.
* ``"fused"``: as ``"auto"``, except that the memory step insists on its
  fused kernel and raises where it cannot run (see
  :func:`dnc_jax.memory_step`).
* ``"pallas"``: no CPU custom call (as ``"xla"``), except that the dense
  link's update and directional weightings run as the Pallas kernels of
  :mod:`dnc_jax.pallas_link`: compiled (Triton) on a GPU, in Pallas's
  interpret mode (slow; for testing) on any other platform. The rest of
  the memory step, and every other link kind, runs on the XLA path.

``"auto"`` does not pick the Pallas kernels on a GPU: on an H200
(``benchmarks/gpu_link.py``; ``benchmarks/results/h200-2026-11-30.md``)
they are within 15% of the XLA path either way and the whole training
step is no faster with them (``docs/kernels.md``).

See ``docs/maths.md`` §6 for where the kernels sit in a step.
"""

from __future__ import annotations

from typing import Callable, Tuple

import jax
import numpy as np

from dnc_jax import cpu_kernels

BACKENDS = ("auto", "xla", "fused", "pallas")
KERNEL_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))

# Kernel stems; a target is a stem followed by the dtype suffix.
MEMORY_STEP_FORWARD = "DncMemoryStepForward"
MEMORY_STEP_BACKWARD = "DncMemoryStepBackward"
ARGSORT = "DncArgsort"
TOP_K = "DncTopK"
SPARSE_LINK_UPDATE = "DncSparseLinkUpdate"
SPARSE_LINK_UPDATE_VJP = "DncSparseLinkUpdateVjp"
SPARSE_READ_OUT = "DncSparseReadOut"
SPARSE_READ_OUT_VJP = "DncSparseReadOutVjp"
SPARSE_LINK_STEP = "DncSparseLinkStep"
SPARSE_LINK_STEP_VJP = "DncSparseLinkStepVjp"
STEMS = (MEMORY_STEP_FORWARD, MEMORY_STEP_BACKWARD, ARGSORT, TOP_K,
         SPARSE_READ_OUT, SPARSE_READ_OUT_VJP, SPARSE_LINK_UPDATE,
         SPARSE_LINK_UPDATE_VJP, SPARSE_LINK_STEP, SPARSE_LINK_STEP_VJP)
_SUFFIXES = {np.dtype(np.float32): "F32", np.dtype(np.float64): "F64"}


def check_backend(backend: str, name: str = "backend") -> str:
  """``backend`` if it is one of :data:`BACKENDS`, else ``ValueError``."""
  if not isinstance(backend, str) or backend not in BACKENDS:
    raise ValueError(f"{name} must be one of {BACKENDS}, got {backend!r}")
  return backend


def target(stem: str, dtype) -> str:
  """The registered name of kernel ``stem`` for float ``dtype``."""
  dtype = np.dtype(dtype)
  if stem not in STEMS or dtype not in _SUFFIXES:
    raise ValueError(f"no CPU kernel {stem!r} for dtype {dtype}")
  return stem + _SUFFIXES[dtype]


def all_targets() -> Tuple[str, ...]:
  """Every kernel target name (what ``cpu_kernels`` registers)."""
  return tuple(stem + suffix for stem in STEMS
               for suffix in _SUFFIXES.values())


def kernel_dtype_ok(*floats) -> bool:
  """Whether ``floats`` share one dtype that the kernels are built for."""
  dtypes = {np.dtype(x.dtype) for x in floats}
  return len(dtypes) == 1 and dtypes.pop() in KERNEL_DTYPES


def kernels_available() -> bool:
  """Whether the kernels are built and registered here (warns once if not)."""
  return cpu_kernels.available()


def use_kernels(backend: str, *floats) -> bool:
  """Whether a kernel call is issued for float operands ``floats``.

  ``False`` for ``"xla"`` and ``"pallas"`` (neither issues a CPU custom
  call), for dtypes the kernels do not take, and where the kernels could
  not be built. Decided at trace time from static dtypes.
  """
  check_backend(backend)
  if backend in ("xla", "pallas"):
    return False
  return kernel_dtype_ok(*floats) and kernels_available()


def dispatch(backend: str, kernel: Callable, xla: Callable, *args,
             floats=None):
  """``kernel(*args)`` on a CPU, ``xla(*args)`` elsewhere or when off.

  ``floats`` (default: ``args``) are the operands whose dtypes decide.
  """
  if not use_kernels(backend, *(args if floats is None else floats)):
    return xla(*args)
  # Lowering keeps only the branch of the platform the computation is on.
  return jax.lax.platform_dependent(*args, cpu=kernel, default=xla)
