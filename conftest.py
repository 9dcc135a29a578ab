"""Repository-wide pytest set-up (the vmtest plugin itself loads through its entry point)."""

import pytest


def pytest_addoption(parser):
    parser.addoption(
        "--run-demo-failures",
        action="store_true",
        help="also run examples/test_failing.py, whose tests fail on purpose to show the reports",
    )


def pytest_collection_modifyitems(config, items):
    if config.getoption("--run-demo-failures"):
        return
    skip = pytest.mark.skip(reason="fails on purpose; run with --run-demo-failures")
    for item in items:
        if item.get_closest_marker("demo_failure"):
            item.add_marker(skip)


def pytest_configure(config):
    config.addinivalue_line("markers", "demo_failure: a test that fails on purpose (see examples/test_failing.py)")
