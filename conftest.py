"""Repository-wide pytest set-up (the vmtest plugin itself loads through its entry point)."""

import json
import signal
from pathlib import Path

import pytest

# A suite started in the background by a shell without job control (CI runners, `cmd &` in a script) inherits
# SIGINT ignored, and every child inherits that too: then the tests of what Ctrl-C does (the children they
# interrupt) could never see it. A handled signal is reset to its default in an exec'd child, so handling it
# here gives the children back a normal Ctrl-C (and makes this run interruptible again).
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_addoption(parser):
    parser.addoption(
        "--run-demo-failures",
        action="store_true",
        help="also run examples/test_failing.py, whose tests fail on purpose to show the reports",
    )
    parser.addoption(
        "--run-torture",
        action="store_true",
        help="run the torture suite (tests/torture: repeated kills and faults, VMTEST_TORTURE_TRIALS trials each)",
    )


MODULE_SECONDS = Path(__file__).parent / "tests" / "module-seconds.json"


def longest_modules_first(items, seconds):
    """``items`` with their modules in descending order of ``seconds`` (module path -> measured seconds; a
    module not in it counts as 0), each module's items in their order; ties keep the collection order."""
    modules = {}
    for item in items:
        modules.setdefault(item.nodeid.split("::", 1)[0], []).append(item)
    ranked = sorted(modules, key=lambda module: -seconds.get(module, 0))  # (sorted is stable)
    return [item for module in ranked for item in modules[module]]


def pytest_collection_modifyitems(config, items):
    # With --no-loadscope-reorder (./run tests passes it), xdist hands out whole modules in collection order:
    # longest first (LPT) from the last measured times, so that no long module starts when the other
    # workers are nearly done. (Its own default order, most tests first, started the few long VM modules last.)
    if config.getoption("loadscopereorder", True) is False and MODULE_SECONDS.is_file():
        items[:] = longest_modules_first(items, json.loads(MODULE_SECONDS.read_text()))
    skips = {
        "demo_failure": None
        if config.getoption("--run-demo-failures")
        else "fails on purpose; run with --run-demo-failures",
        "torture": None if config.getoption("--run-torture") else "torture suite; run with --run-torture",
    }
    for item in items:
        for marker, reason in skips.items():
            if reason and item.get_closest_marker(marker):
                item.add_marker(pytest.mark.skip(reason=reason))


def pytest_configure(config):
    config.addinivalue_line("markers", "demo_failure: a test that fails on purpose (see examples/test_failing.py)")
