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
  addressing, sparse_link         the pure maths, module by module
  fused                           the fused CPU kernel of the memory step
"""

from dnc_jax import addressing
from dnc_jax import fused
from dnc_jax import sparse_link
from dnc_jax.access import MemoryAccess, initial_access_state, memory_step
from dnc_jax.config import DNCConfig
from dnc_jax.controllers import FeedForwardController, make_controller
from dnc_jax.dnc import DNC, clip_gradient
from dnc_jax.interface import oneplus, parse_interface
from dnc_jax.types import (AccessState, DNCState, MemoryInterface,
                           SparseTemporalLinkageState, TemporalLinkageState)
from dnc_jax.unroll import unroll

__version__ = "0.1.0"

__all__ = [
    "AccessState", "DNC", "DNCConfig", "DNCState", "FeedForwardController",
    "MemoryAccess", "MemoryInterface", "SparseTemporalLinkageState",
    "TemporalLinkageState", "addressing", "clip_gradient",
    "initial_access_state", "make_controller", "memory_step", "oneplus",
    "parse_interface", "sparse_link", "fused", "unroll",
]
