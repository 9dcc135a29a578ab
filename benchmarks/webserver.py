#!/usr/bin/env python3
"""Wall time of the webserver example from a warm cache, alone and twice in a module-scoped suite.

    .venv/bin/python benchmarks/webserver.py [--runs 3]

Each measurement is a whole `pytest` process (start-up, two boots, the test,
teardown), as a user would see it. The images are built once first.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from table import print_table  # noqa: E402

MODULE_SUITE = """
import pytest
from vmtest import MachineConfig
from webserver_configs import server, client

pytestmark = pytest.mark.vmtest(nodes={"server": server, "client": client}, scope="module")

def check(vms, server, client):
    vms.start_all()  # no-op once running: both boot in parallel
    server.wait_for_unit("nginx.service")
    server.wait_for_open_port(80)
    assert client.succeed("curl -sf http://server/") == "hello from server\\n"

def test_once(vms, server, client):
    check(vms, server, client)

def test_twice(vms, server, client):
    check(vms, server, client)
"""


def pytest_wall(args: list[str], cwd: Path) -> float:
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "log_cli=false", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
    )
    took = time.monotonic() - start
    if proc.returncode != 0:
        sys.exit(f"pytest failed:\n{proc.stdout[-3000:]}")
    return took


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    example = REPO / "examples" / "test_webserver.py"
    pytest_wall([str(example)], REPO)  # warm the cache
    single = [pytest_wall([str(example)], REPO) for _ in range(args.runs)]
    with tempfile.TemporaryDirectory() as tmp:
        suite = Path(tmp) / "test_module_suite.py"
        suite.write_text(MODULE_SUITE)
        (Path(tmp) / "webserver_configs.py").write_text(example.read_text())
        module = [pytest_wall([str(suite)], Path(tmp)) for _ in range(args.runs)]
    rows = [
        (f"webserver example, warm cache, median of {args.runs}", f"{statistics.median(single):.1f} s", "<= 25 s"),
        (f"same test twice, module scope (one boot), median of {args.runs}", f"{statistics.median(module):.1f} s", ""),
    ]
    print_table(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
