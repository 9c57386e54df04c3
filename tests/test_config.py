"""DNCConfig validation and derived sizes."""

import dataclasses

import numpy as np
import pytest

from dnc_jax import DNCConfig, parse_interface


@pytest.mark.parametrize("field,value,message", [
    ("output_size", 0, "output_size must be >= 1"),
    ("memory_size", -3, "memory_size must be >= 1"),
    ("word_size", 2.5, "word_size must be an int"),
    ("num_reads", True, "num_reads must be an int"),
    ("num_writes", 0, "num_writes must be >= 1"),
    ("controller", "gru", "controller must be one of"),
    ("hidden_size", 0, "hidden_size must be >= 1"),
    ("num_layers", 0, "num_layers must be >= 1"),
    ("clip_value", -1.0, "clip_value must be a number >= 0"),
    ("strength_squash", "exp", "strength_squash must be one of"),
    ("link_sparsity", 0, r"link_sparsity must be in \[1, 16\]"),
    ("link_sparsity", 17, r"link_sparsity must be in \[1, 16\]"),
    ("link_storage", "csr", "link_storage must be one of"),
    ("use_temporal_links", 1, "use_temporal_links must be a bool"),
    ("input_size", 0, "input_size must be >= 1"),
    ("controller_grad_clip", -1, "controller_grad_clip must be None or"),
])
def test_bad_values_name_the_field(field, value, message):
  with pytest.raises(ValueError, match=message):
    DNCConfig(**{"output_size": 3, field: value})


def test_frozen_and_replace_validates():
  config = DNCConfig(output_size=3)
  with pytest.raises(dataclasses.FrozenInstanceError):
    config.memory_size = 4
  assert config.replace(memory_size=32).memory_size == 32
  with pytest.raises(ValueError, match="memory_size"):
    config.replace(memory_size=0)


@pytest.mark.parametrize("r,w", [(1, 10), (4, 16), (3, 7)])
def test_interface_size_matches_the_paper_for_one_write_head(r, w):
  config = DNCConfig(output_size=1, num_reads=r, word_size=w)
  assert config.interface_size == w * r + 3 * w + 5 * r + 3


def test_parse_interface_shapes_ranges_and_layout():
  config = DNCConfig(output_size=1, num_reads=3, word_size=5, num_writes=2)
  vector = np.random.default_rng(0).normal(size=(4, config.interface_size)) * 3
  iface = parse_interface(vector, config)
  assert iface.read_keys.shape == (4, 3, 5)
  assert iface.write_keys.shape == (4, 2, 5)
  assert iface.read_modes.shape == (4, 3, 5)
  assert float(iface.read_strengths.min()) >= 1.0
  for gate in (iface.free_gates, iface.allocation_gates, iface.write_gates,
               iface.erase_vectors):
    assert 0 <= float(gate.min()) and float(gate.max()) <= 1
  # The first R*W numbers are the read keys, unsquashed.
  np.testing.assert_allclose(iface.read_keys.reshape(4, -1), vector[:, :15])
  with pytest.raises(ValueError, match="interface vector has width"):
    parse_interface(vector[:, :-1], config)


def test_softplus_strengths_and_no_links():
  config = DNCConfig(output_size=1, num_reads=2, word_size=3,
                     strength_squash="softplus", use_temporal_links=False)
  vector = np.full((1, config.interface_size), -5.0)
  iface = parse_interface(vector, config)
  assert iface.read_modes is None
  assert float(iface.read_strengths.max()) < 0.01
