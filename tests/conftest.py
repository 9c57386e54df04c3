"""Test-wide settings: float64 on, so references compare at float64."""

import jax

jax.config.update("jax_enable_x64", True)
