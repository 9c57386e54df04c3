"""Test-wide settings: float64 on, so references compare at float64.

``DNC_JAX_REQUIRE_KERNELS=1`` (CI sets it) turns every skip for want of a
compiler or of the C++ kernels into a failure, so a broken build or a
package that ships no headers cannot pass as "skipped".
"""

import os
import shutil
import tempfile

import jax
import pytest

jax.config.update("jax_enable_x64", True)

# One persistent compilation cache for the whole run, shared by pytest-xdist's
# workers (they inherit the environment of the process that loads this file
# first) and by the training subprocesses tests start: most of the suite's
# time is XLA compiling, and the resume tests compile the same step two or
# three times (uninterrupted run, interrupted run, resume). An entry is keyed
# by the whole computation, the jax version and the flags, so a hit runs
# exactly what a fresh compile would. DNC_JAX_TEST_CACHE=DIR keeps it.
_OWN_CACHE = not os.environ.get("DNC_JAX_TEST_CACHE")
if _OWN_CACHE:
  os.environ["DNC_JAX_TEST_CACHE"] = tempfile.mkdtemp(
      prefix="dnc-test-jax-cache-")
_CACHE = os.environ["DNC_JAX_TEST_CACHE"]
os.environ["JAX_COMPILATION_CACHE_DIR"] = _CACHE
jax.config.update("jax_compilation_cache_dir", _CACHE)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)

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


def pytest_unconfigure(config):
  del config
  if _OWN_CACHE:
    shutil.rmtree(_CACHE, ignore_errors=True)


def pytest_configure(config):
  # Also registered in setup.cfg; here too for runs outside the checkout
  # (CI's wheel test).
  config.addinivalue_line("markers", "slow: takes minutes; not run by default")
