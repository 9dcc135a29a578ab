"""The grid reader's calibration from power-on, and for a terminal window on X11."""

from __future__ import annotations

import sys
from pathlib import Path

from vmtest import MachineConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples"))
from test_x11 import x11  # noqa: E402


def test_wait_for_text_from_power_on_calibrates_once_the_console_is_up(vm_factory, nonce):
    # A kernel parameter nobody else uses: a glyph-table cache key of its own, so
    # calibration really happens here (the image itself is shared).
    vm = vm_factory(
        "machine",
        MachineConfig(kernel_params=[f"vmtest.nonce={nonce}"], virtualisation={"resolution": (800, 600)}),
        snapshots=False,  # the screens of a boot from power-on (and a key no other run has: never restored)
    )
    vm.start()  # no waiting for the boot: the first reads see the early VGA text screen
    vm.wait_for_text(r"machine login:", timeout=300)
    table = vm.screen.glyph_table()
    assert table is not None and table.screen == (800, 600) and table.cell == (8, 16)
    assert vm.succeed("stty -F /dev/tty1 size") == "37 100\n"  # 800x600 in 8x16 cells
    assert "machine login:" in vm.get_screen_text()


def test_xterm_font_calibration_makes_x11_reads_exact(vm_factory):
    vm = vm_factory("desktop", x11)
    vm.wait_for_window("xterm")
    pts = vm.wait_until_succeeds('p=$(pgrep -x bash -P "$(pgrep -x xterm)") && readlink /proc/$p/fd/0').strip()
    table = vm.screen.calibrate_terminal(pts)
    assert table.cell == (10, 20) and table.floating
    line = "vm1 O0 l1 I| ~/.config/x_y-z.json C:\\Temp [ok] 10.0.2.15/24"
    vm.succeed(f"printf '%s\\n' '{line}' > {pts}")
    vm.wait_for_text(r"10\.0\.2\.15/24", timeout=60)
    assert line in vm.get_screen_text().splitlines()
