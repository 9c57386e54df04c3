"""Named operands and their shape checks, for the kernels and the step.

A spec maps each operand's name to the symbols of its trailing dimensions
(``"N"``, ``"W"``, ...); every operand also carries the same leading batch
axes (any number, none inside ``vmap``). :func:`check` binds each symbol at
its first occurrence and raises a ``ValueError`` naming the operand, its
shape and the operand it disagrees with, before any kernel call is issued.
The checks read static shapes at trace time only; they add no work to the
compiled step.
"""

from __future__ import annotations

from typing import Dict, Mapping, Optional, Sequence, Tuple

import numpy as np

# One memory step's operands, named as in MemoryInterface and AccessState.
# ``M`` is the number of read modes (``1 + 2H``, or absent without links).
INTERFACE_DIMS = {
    "read_keys": ("R", "W"),
    "read_strengths": ("R",),
    "write_keys": ("H", "W"),
    "write_strengths": ("H",),
    "erase_vectors": ("H", "W"),
    "write_vectors": ("H", "W"),
    "free_gates": ("R",),
    "allocation_gates": ("H",),
    "write_gates": ("H",),
    "read_modes": ("R", "M"),
}
STATE_DIMS = {
    "memory": ("N", "W"),
    "read_weights": ("R", "N"),
    "write_weights": ("H", "N"),
    "usage": ("N",),
}


def _shape(x) -> Tuple[int, ...]:
  return tuple(np.shape(x))


def check(where: str, dims: Mapping[str, Sequence[str]],
          arrays: Mapping[str, object],
          sizes: Optional[Dict[str, Tuple[int, str]]] = None,
          integer: Sequence[str] = (),
          batch: Optional[Tuple[Tuple[int, ...], str]] = None,
          dtypes: bool = True) -> Dict[str, Tuple[int, str]]:
  """Checks ``arrays`` against ``dims``; returns the bound sizes.

  Args:
    where: what is being called, for the messages.
    dims: operand name -> symbols of its trailing dimensions.
    arrays: operand name -> array (or anything with ``shape``/``dtype``);
      operands missing here are not checked.
    sizes: symbol -> ``(size, where it came from)`` already bound.
    integer: operands that must be int32; every other one must share the
      dtype of the first float operand, which must be a float.
    batch: ``(leading axes, operand they came from)`` already bound.
    dtypes: whether to check dtypes too (a kernel call needs one float
      dtype; the XLA path promotes mixed ones as usual).
  Returns:
    ``sizes`` with every symbol seen bound, and ``"..."`` bound to the
    leading axes.
  Raises:
    ValueError: naming the operand, its shape and what it disagrees with.
  """
  sizes = dict(sizes or {})
  if batch is not None:
    sizes["..."] = batch
  float_dtype = None
  for name, symbols in dims.items():
    if name not in arrays or arrays[name] is None:
      continue
    x = arrays[name]
    shape = _shape(x)
    pattern = "[..., " + ", ".join(symbols) + "]"
    if len(shape) < len(symbols):
      raise ValueError(f"{where}: {name} has shape {shape}, expected "
                       f"{pattern} (at least {len(symbols)} axes)")
    lead = shape[:len(shape) - len(symbols)]
    if "..." not in sizes:
      sizes["..."] = (lead, f"{name} of shape {shape}")
    elif lead != sizes["..."][0]:
      raise ValueError(
          f"{where}: {name} has shape {shape}, whose leading (batch) axes "
          f"{lead} differ from {sizes['...'][0]} of {sizes['...'][1]}")
    for axis, (symbol, size) in enumerate(zip(symbols, shape[len(lead):])):
      if symbol not in sizes:
        sizes[symbol] = (size, f"{name} of shape {shape}")
      elif sizes[symbol][0] != size:
        raise ValueError(
            f"{where}: {name} has shape {shape}, expected {pattern} with "
            f"{symbol} = {sizes[symbol][0]} (from {sizes[symbol][1]}), got "
            f"{symbol} = {size} in its axis {len(lead) + axis}")
    if not dtypes:
      continue
    dtype = np.dtype(x.dtype)
    if name in integer:
      if dtype != np.dtype(np.int32):
        raise ValueError(f"{where}: {name} must be int32, got {dtype}")
    elif float_dtype is None:
      if not np.issubdtype(dtype, np.floating):
        raise ValueError(f"{where}: {name} must be a float array, got "
                         f"{dtype}")
      float_dtype = (dtype, name)
    elif dtype != float_dtype[0]:
      raise ValueError(f"{where}: {name} has dtype {dtype} but "
                       f"{float_dtype[1]} has {float_dtype[0]}; the "
                       "operands must share one float dtype")
  return sizes


def require(where: str, symbol: str, sizes, want: int, why: str):
  """Raises unless the bound ``symbol`` equals ``want`` (``why`` says why)."""
  if symbol in sizes and sizes[symbol][0] != want:
    raise ValueError(f"{where}: {symbol} = {sizes[symbol][0]} (from "
                     f"{sizes[symbol][1]}) but {why} = {want}")
