"""Resident memory of this process (Linux), shared by our and peers' timers.

Standard library only: the peers' environments import it without jax.
"""

import ctypes
import pathlib
import resource


def reset_peak_rss():
  """Resets the process's resident-memory high-water mark.

  Heap pages freed earlier (by the compiler, say) are first handed back to
  the system, so the mark measures what runs next, not what came before.
  """
  try:
    ctypes.CDLL("libc.so.6").malloc_trim(0)
  except (OSError, AttributeError):
    pass
  try:
    pathlib.Path("/proc/self/clear_refs").write_text("5")
  except OSError:
    pass


def _status_bytes(field: str) -> int:
  """A ``/proc/self/status`` memory field in bytes, or -1 if unreadable."""
  try:
    for line in pathlib.Path("/proc/self/status").read_text().splitlines():
      if line.startswith(field + ":"):
        return int(line.split()[1]) * 1024
  except OSError:
    pass
  return -1


def peak_rss_bytes() -> int:
  """The high-water mark of resident memory since the last reset."""
  peak = _status_bytes("VmHWM")
  if peak < 0:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
  return peak


def rss_bytes() -> int:
  """Resident memory now (-1 where /proc is unavailable)."""
  return _status_bytes("VmRSS")
