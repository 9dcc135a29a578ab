"""Screens, keyboards and OCR against real guests (module-scoped: one boot for the graphics tests)."""

from __future__ import annotations

import re

import pytest
from PIL import Image

from vmtest import MachineConfig, NoDisplay, TextNotFound

PRINTABLE = "".join(chr(c) for c in range(0x20, 0x7F))

pytestmark = pytest.mark.vmtest(nodes={"machine": MachineConfig()}, scope="module")


def _take_over_tty1(machine) -> None:
    machine.wait_for_unit("getty@tty1.service")
    machine.succeed(
        "systemctl stop getty@tty1",
        "dmesg -n 1",
        "rm -f /tmp/typed",
        "printf '\\033[H\\033[2J' > /dev/tty1",
        "setsid sh -c 'exec cat > /tmp/typed' < /dev/tty1 > /dev/tty1 2>&1 &",
    )
    machine.wait_until_succeeds("pgrep -x cat")


def test_send_chars_types_all_printable_ascii_byte_exact(machine):
    _take_over_tty1(machine)
    machine.send_chars(PRINTABLE + "\n")
    machine.wait_for_file("/tmp/typed", timeout=60)
    machine.wait_until_succeeds('test "$(wc -l < /tmp/typed)" = 1', timeout=60)
    assert machine.succeed("cat /tmp/typed") == PRINTABLE + "\n"
    assert machine.get_tty_text(1).splitlines()[0].rstrip() == PRINTABLE
    # the grid reader reads the same line off the screenshot, exactly
    assert machine.get_screen_text().splitlines()[0] == PRINTABLE
    assert machine.wait_for_text(re.escape(PRINTABLE), timeout=30)


def test_send_key_combination_switches_virtual_terminal(machine):
    machine.send_key("alt-f2")
    machine.wait_until_succeeds("grep -qx tty2 /sys/class/tty/tty0/active", timeout=30)
    machine.wait_for_text(r"machine login:", timeout=60)
    assert "machine login:" in machine.dump_tty_contents(2)
    machine.wait_until_tty_matches(2, "login: ", timeout=30)  # the trailing space is kept, as NixOS
    machine.send_key("alt-f1")
    machine.wait_until_succeeds("grep -qx tty1 /sys/class/tty/tty0/active", timeout=30)


def test_wait_for_text_times_out_with_the_screenshot_and_readings(machine):
    machine.wait_until_succeeds("test -e /sys/class/graphics/fb0")  # the framebuffer console is up
    with pytest.raises(TextNotFound) as caught:
        machine.wait_for_text(r"this text never appears", timeout=4)
    error = caught.value
    assert error.screenshot is not None and error.screenshot.exists()
    with Image.open(error.screenshot) as image:
        assert image.size == (1024, 768)
    assert "grid" in error.readings and "raw" in error.readings
    assert str(error.screenshot) in str(error) and "--- read by grid ---" in str(error)


def test_screenshot_is_a_png_in_the_output_dir(machine, request):
    path = machine.screenshot("console")
    assert path.name == "console.png" and path.parent == machine.output_dir
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size == (1024, 768)


@pytest.mark.vmtest(nodes={"machine": MachineConfig(virtualisation={"graphics": False})})
def test_screen_methods_without_graphics_say_why(machine):
    for call in (lambda: machine.screenshot("x"), machine.get_screen_text, lambda: machine.wait_for_text("x", 1)):
        with pytest.raises(NoDisplay, match=r"graphics=False"):
            call()
    assert not machine.is_running()  # refused before booting anything
