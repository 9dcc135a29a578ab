"""The one table printer of the benchmark scripts: rows of (measurement, value, target)."""

from __future__ import annotations

import os
from collections.abc import Sequence


def print_table(rows: Sequence[tuple[str, str, str]], title: str = "") -> None:
    """Print ``rows`` aligned, with the load average (timings on a loaded machine are not comparable)."""
    width = max(len(r[0]) for r in rows)
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    print(f"\n{title}{' ' if title else ''}(load average at the end: {load})")
    print(f"{'measurement':{width}}  {'value':>10}  target")
    print(f"{'-' * width}  {'-' * 10}  ------")
    for name, value, target in rows:
        print(f"{name:{width}}  {value:>10}  {target}")
