"""Deprecated: moved to :mod:`dnc_jax.links.indexed`.

Kept so that ``from dnc_jax import sparse_link`` and
``import dnc_jax.sparse_link`` still work; ``update`` and ``read_out`` still
take ``use_kernel`` (``False`` means ``backend="xla"``).
"""

import warnings

from dnc_jax.links.indexed import (  # noqa: F401
    backward_weights, batched, directional_weights, forward_weights,
    link_update, to_dense)
from dnc_jax.links import indexed as _indexed

warnings.warn("dnc_jax.sparse_link moved to dnc_jax.links.indexed",
              DeprecationWarning, stacklevel=2)


def update(indices, values, precedence, write_weights, use_kernel=True, *,
           backend=None):
  """:func:`dnc_jax.links.indexed.update`; ``use_kernel=False`` = XLA."""
  if backend is None:
    backend = "auto" if use_kernel else "xla"
  return _indexed.update(indices, values, precedence, write_weights,
                         backend=backend)


def read_out(indices, values, prev_read_weights, content, read_modes, memory,
             use_kernel=True, *, backend=None):
  """:func:`dnc_jax.links.indexed.read_out`; ``use_kernel=False`` = XLA."""
  if backend is None:
    backend = "auto" if use_kernel else "xla"
  return _indexed.read_out(indices, values, prev_read_weights, content,
                           read_modes, memory, backend=backend)
