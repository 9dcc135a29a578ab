#!/usr/bin/env python3
"""Generate the OCR benchmark's data set from a real guest.

    .venv/bin/python benchmarks/ocr/make_dataset.py [--out benchmarks/ocr/screens]

Boots one guest named ``vm1`` with a minimal X11 (the packages of
examples/test_x11.py) and writes, for each screen, ``NNN-<kind>.png`` (the QMP
screendump, native resolution) and ``NNN-<kind>.txt`` (the exact text it
shows):

* ``console``: the framebuffer console (tty1, getty stopped) showing random
  lines (hostnames with digits, paths, punctuation, mixed case, O/0 and l/1
  heavy tokens) and real command output (ls with colours, ps, ip, dmesg, ...).
  The expected text is read from /dev/vcsu1 (exact, not OCR).
* ``x11``: an xterm (fonts 10x20 and 9x15) on Xorg showing random lines
  written to its pty; the expected text is exactly what was written.

Also writes ``glyphs.json`` and ``glyphs-xterm-<font>.json``: the grid
reader's glyph tables of the console and of each xterm font, calibrated on
the same guest. The benchmark (bench.py) reads only these files.
"""

from __future__ import annotations

import argparse
import logging
import random
import shlex
import string
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from vmtest import Machine, MachineConfig  # noqa: E402

X11_PACKAGES = [
    "xserver-xorg-core",
    "xserver-xorg-legacy",
    "xinit",
    "xterm",
    "x11-utils",
    "xfonts-base",
    "xserver-xorg-video-fbdev",
    "xserver-xorg-input-libinput",
]

WORDS = [
    "root",
    "login",
    "Password",
    "systemd",
    "Started",
    "Failed",
    "nginx",
    "Listening",
    "Kernel",
    "eth0",
    "ens4",
    "vm1",
    "vm2",
    "node07",
    "db3",
    "web-01",
    "backup",
    "ERROR",
    "Warning",
    "OK",
    "config",
    "Timeout",
    "Debian",
    "GNU/Linux",
    "x86_64",
    "0x1f3a",
    "build",
    "Install",
    "Boot",
]
HOSTS = ["vm1", "vm2", "vm10", "web01", "db-3", "node7.example.org", "srv01.lan", "host42", "Ol1-test"]
PATHS = [
    "/etc/nginx/nginx.conf",
    "/var/lib/apt/lists",
    "/usr/share/doc/*/copyright",
    "/tmp/xchg/out.log",
    "~/.config/vmtest/cache-0.json",
    "/dev/vda1",
    "/run/systemd/journal/socket",
    "C:\\Temp\\x.txt",
]


def token(rng: random.Random) -> str:
    kind = rng.randrange(8)
    if kind == 0:
        return rng.choice(HOSTS)
    if kind == 1:
        return rng.choice(PATHS)
    if kind == 2:
        return "".join(rng.choice("O0Il1|oQ8B") for _ in range(rng.randint(3, 8)))
    if kind == 3:
        return f"{rng.randint(1, 254)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}/24"
    if kind == 4:
        return "".join(rng.choice(string.punctuation) for _ in range(rng.randint(1, 4)))
    if kind == 5:
        return "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(rng.randint(4, 12)))
    return rng.choice(WORDS)


def random_lines(rng: random.Random, count: int, width: int) -> list[str]:
    lines = []
    for _ in range(count):
        line = ""
        while len(line) < rng.randint(10, width - 10):
            line += token(rng) + rng.choice([" ", " ", " ", ": ", ", ", "  "])
        lines.append(line[:width].rstrip())
    return lines


REAL_COMMANDS = [
    "ls -la /etc | head -40",
    "ls --color=always -l /usr/bin | head -30",
    "ps -eo pid,user,comm | head -35",
    "ip -d addr show lo",
    "dmesg | tail -30",
    "cat /etc/passwd",
    "systemctl list-units --no-pager --type=service | head -25",
    "df -h; mount | head -15",
    "printf '[  \\033[32mOK\\033[0m  ] Started \\033[1mvmtest-backdoor.service\\033[0m - vmtest backdoor.\\n"
    "[\\033[31mFAILED\\033[0m] Failed to start \\033[1mnginx.service\\033[0m on vm1.\\n'; uname -a; id",
    "head -c 1500 /usr/share/common-licenses/GPL-3 | fold -w 100",
]


def console_screens(vm: Machine, rng: random.Random, out: Path, start: int, count: int) -> int:
    vm.succeed("systemctl stop getty@tty1", "dmesg -n 1")
    n = start
    for i in range(count):
        if i < len(REAL_COMMANDS):
            cmd = REAL_COMMANDS[i]
            script = f"printf 'root@vm1:~# %s\\n' {shlex.quote(cmd)}; {cmd}"
        else:
            lines = random_lines(rng, rng.choice([3, 12, 25, 46]), 120)
            script = f"printf '%s\\n' {' '.join(shlex.quote(line) for line in lines)}"
        vm.succeed(f"set +o pipefail; {{ printf '\\033[H\\033[2J'; {script}; }} > /dev/tty1 2>&1")
        for _ in range(5):
            before = vm.get_tty_text(1)
            vm.screen.dump(out / f"{n:03d}-console.png")
            if vm.get_tty_text(1) == before:
                break
        (out / f"{n:03d}-console.txt").write_text(before + "\n")
        n += 1
    return n


def x11_screens(vm: Machine, rng: random.Random, out: Path, start: int, fonts: dict[str, int]) -> int:
    n = start
    for font, count in fonts.items():
        cols, rows = (96, 34) if font == "10x20" else (110, 48)
        vm.succeed(
            "pkill -x xinit || true; while pgrep -x Xorg >/dev/null; do sleep 0.2; done",
            f"setsid xinit /usr/bin/xterm -fn {font} -geometry {cols}x{rows}+0+0 -- :0 vt7 -nolisten tcp -br "
            ">/tmp/x.log 2>&1 </dev/null &",
        )
        vm.wait_for_window("xterm", timeout=120)
        pts = vm.wait_until_succeeds('p=$(pgrep -x bash -P "$(pgrep -x xterm)") && readlink /proc/$p/fd/0').strip()
        time.sleep(1)
        table = vm.screen.calibrate_terminal(pts)
        (out / f"glyphs-xterm-{font}.json").write_text(table.to_json() + "\n")
        for _ in range(count):
            lines = random_lines(rng, rng.randint(3, rows - 2), cols - 2)
            text = "\n".join(lines)
            vm.succeed(f"printf '\\033[H\\033[2J%s\\n' {shlex.quote(text)} > {pts}")
            time.sleep(0.5)  # xterm draws asynchronously
            vm.screen.dump(out / f"{n:03d}-x11.png")
            (out / f"{n:03d}-x11.txt").write_text(text + "\n")
            n += 1
    vm.succeed("pkill -x xinit || true")
    return n


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default=str(Path(__file__).parent / "screens"))
    parser.add_argument("--console", type=int, default=30)
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(args.seed)
    with Machine("vm1", MachineConfig(packages=X11_PACKAGES, virtualisation={"disk_size": 2048}), output_dir=out) as vm:
        vm.serial_echo = False
        vm.wait_for_unit("getty@tty1.service")
        vm.wait_until_succeeds("test -e /sys/class/graphics/fb0")
        table = vm.screen.calibrate()
        (out / "glyphs.json").write_text(table.to_json() + "\n")
        n = console_screens(vm, rng, out, 1, args.console)
        n = x11_screens(vm, rng, out, n, {"10x20": 8, "9x15": 6})
        vm.shutdown()
    print(f"{n - 1} screens in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
