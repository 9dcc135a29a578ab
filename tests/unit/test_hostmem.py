"""The memory check before several machines start together (vmtest.vm.hostmem)."""

from __future__ import annotations

import pytest

from vmtest.core.errors import HostError
from vmtest.vm.hostmem import QEMU_OVERHEAD_MIB, check_fits, needed_mib


def test_machines_that_fit_start() -> None:
    machines = {f"m{i}": 1024 for i in range(4)}
    assert needed_mib(machines) == 4 * (1024 + QEMU_OVERHEAD_MIB)
    check_fits(machines, needed_mib(machines))
    check_fits(machines, None)  # unknown: not checked
    check_fits({}, 0)


def test_too_many_machines_are_refused_before_booting_with_the_numbers() -> None:
    machines = {f"m{i}": 1024 for i in range(16)} | {"big": 4096}
    with pytest.raises(HostError) as exc:
        check_fits(machines, 8000)
    text = str(exc.value)
    assert "starting 17 machine(s) at once needs about" in text
    assert f"{needed_mib(machines)} MiB" in text and "8000 MiB available; none was started" in text
    assert "the largest: big, 4096 MiB" in text
