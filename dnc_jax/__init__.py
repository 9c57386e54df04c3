"""dnc_jax: the Differentiable Neural Computer in JAX and Haiku.

Public API:
  DNC, DNCConfig                  the core and its configuration
  MemoryAccess, memory_step       the memory module and its pure step
  initial_access_state            the all-zero memory state
  parse_interface, oneplus        interface vector -> MemoryInterface
  FeedForwardController, make_controller
  AccessState, TemporalLinkageState, SparseTemporalLinkageState,
  MemoryInterface, DNCState       the NamedTuple containers
  unroll                          hk.dynamic_unroll with chunked remat
  addressing                      the pure addressing maths
  links                           the temporal link, one module per kind
  backend                         whether the C++ CPU kernels are used
  fused                           the fused CPU kernel of the memory step
  sparse_link                     deprecated alias of links.indexed
  NTM, NTMConfig, ntm             the Neural Turing Machine baseline
                                  (docs/ntm.md)

The maths is written out in ``docs/maths.md``.
"""

import importlib as _importlib

from dnc_jax import addressing
from dnc_jax import backend
from dnc_jax import fused
from dnc_jax import links
from dnc_jax import ntm
from dnc_jax.access import MemoryAccess, initial_access_state, memory_step
from dnc_jax.config import DNCConfig
from dnc_jax.controllers import FeedForwardController, make_controller
from dnc_jax.dnc import DNC, clip_gradient
from dnc_jax.interface import oneplus, parse_interface
from dnc_jax.ntm import NTM, NTMConfig, NTMInterface, NTMState, ntm_memory_step
from dnc_jax.types import (AccessState, DNCState, MemoryInterface,
                           SparseTemporalLinkageState, TemporalLinkageState)
from dnc_jax.unroll import unroll

__version__ = "0.2.0"

__all__ = [
    "AccessState", "DNC", "DNCConfig", "DNCState", "FeedForwardController",
    "MemoryAccess", "MemoryInterface", "NTM", "NTMConfig", "NTMInterface",
    "NTMState", "SparseTemporalLinkageState",
    "TemporalLinkageState", "addressing", "backend", "clip_gradient",
    "initial_access_state", "links", "make_controller", "memory_step", "ntm",
    "ntm_memory_step",
    "oneplus", "parse_interface", "sparse_link", "fused", "unroll",
]


def __getattr__(name):
  # Imported on first use only, so that its DeprecationWarning reaches just
  # the code that still uses it.
  if name == "sparse_link":
    return _importlib.import_module("dnc_jax.sparse_link")
  raise AttributeError(f"module 'dnc_jax' has no attribute {name!r}")
