"""Test-wide settings: float64 on, so references compare at float64.

``DNC_JAX_REQUIRE_KERNELS=1`` (CI sets it) turns every skip for want of a
compiler or of the C++ kernels into a failure, so a broken build or a
package that ships no headers cannot pass as "skipped".
"""

import os

import jax
import pytest

jax.config.update("jax_enable_x64", True)

REQUIRE_KERNELS = os.environ.get("DNC_JAX_REQUIRE_KERNELS", "") not in (
    "", "0")
_KERNEL_SKIP_WORDS = ("compiler", "kernel")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
  outcome = yield
  report = outcome.get_result()
  if not (REQUIRE_KERNELS and report.skipped):
    return
  reason = str(report.longrepr[-1] if isinstance(report.longrepr, tuple)
               else report.longrepr)
  if any(word in reason.lower() for word in _KERNEL_SKIP_WORDS):
    report.outcome = "failed"
    report.longrepr = (f"DNC_JAX_REQUIRE_KERNELS is set but the test was "
                       f"skipped: {reason}")


def pytest_configure(config):
  # Also registered in setup.cfg; here too for runs outside the checkout
  # (CI's wheel test).
  config.addinivalue_line("markers", "slow: takes minutes; not run by default")
