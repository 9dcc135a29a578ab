"""Stage 1's choice of the systemd generators to skip for a boot (vmtest/image/guest/init), run by busybox's
shell, as in the initrd, on made-up root file systems. (That the skipped generators would really have generated
nothing is checked in a booted guest: tests/integration/test_boot.py.)"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from vmtest.image import kernel

INIT = Path(kernel.__file__).parent / "guest" / "init"
ALL = {
    "systemd-debug-generator",
    "systemd-rc-local-generator",
    "systemd-fstab-generator",
    "systemd-sysv-generator",
}
CMDLINE = "root=LABEL=vmtest-root console=tty0 console=ttyS0,115200 panic=-1 vmtest.modules=virtio,display"


def skipped(root: Path, cmdline: str = CMDLINE) -> set[str]:
    text = INIT.read_text()
    part = text[text.index("# --- skipped_generators: begin") : text.index("# --- skipped_generators: end")]
    busybox = shutil.which("busybox") or "/bin/busybox"
    out = subprocess.run(
        [busybox, "sh", "-c", part + 'skipped_generators "$1" "$2"; echo "$skip"', "sh", str(root), cmdline],
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": "/nonexistent"},  # built-ins only, as the comment in the script says
    ).stdout
    return set(out.split())


def write(root: Path, path: str, text: str = "", mode: int = 0o644) -> None:
    file = root / path
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text(text)
    file.chmod(mode)


@pytest.fixture
def debian(tmp_path: Path) -> Path:
    """A root like vmtest's Debian image: a comment-only fstab, init scripts that all have native units
    (hwclock.sh's masked by a link to /dev/null, udev's a plain unit file)."""
    write(tmp_path, "etc/fstab", "# root is mounted by the vmtest stage-1 initrd\n\n   # indented comment\n")
    write(tmp_path, "etc/init.d/hwclock.sh", "#!/bin/sh\n", 0o755)
    write(tmp_path, "etc/init.d/udev", "#!/bin/sh\n", 0o755)
    (tmp_path / "lib/systemd/system").mkdir(parents=True)
    (tmp_path / "lib/systemd/system/hwclock.service").symlink_to("/dev/null")
    write(tmp_path, "usr/lib/systemd/system/udev.service", "[Service]\n")
    return tmp_path


def test_a_root_with_nothing_to_generate_skips_all_four(tmp_path: Path, debian: Path) -> None:
    assert skipped(tmp_path / "empty") == ALL  # no fstab, no init.d, no rc.local
    assert skipped(debian) == ALL


def test_an_fstab_entry_or_a_linked_fstab_keeps_the_fstab_generator(debian: Path) -> None:
    write(debian, "etc/fstab", "# comment\n  tmpfs /mnt tmpfs defaults 0 0\n")
    assert skipped(debian) == ALL - {"systemd-fstab-generator"}
    (debian / "etc/fstab").unlink()
    (debian / "etc/fstab").symlink_to("/nonexistent/fstab")  # resolved in the initrd, not the root: kept
    assert skipped(debian) == ALL - {"systemd-fstab-generator"}


@pytest.mark.parametrize("param", ["fstab=no", "systemd.volatile=state", "systemd.swap=0"])
def test_command_line_options_of_the_fstab_generator_keep_it(debian: Path, param: str) -> None:
    assert skipped(debian, f"{CMDLINE} {param}") == ALL - {"systemd-fstab-generator"}
    assert skipped(debian, f"{param} {CMDLINE}") == ALL - {"systemd-fstab-generator"}


def test_an_rc_local_keeps_its_generator_even_as_a_dangling_link(debian: Path) -> None:
    write(debian, "etc/rc.local", "#!/bin/sh\n", 0o755)
    assert skipped(debian) == ALL - {"systemd-rc-local-generator"}
    (debian / "etc/rc.local").unlink()
    os.symlink("/usr/local/bin/boot-script", debian / "etc/rc.local")
    assert skipped(debian) == ALL - {"systemd-rc-local-generator"}


def test_an_init_script_without_a_native_unit_keeps_the_sysv_generator(debian: Path) -> None:
    write(debian, "etc/init.d/legacy", "#!/bin/sh\n", 0o755)
    assert skipped(debian) == ALL - {"systemd-sysv-generator"}
    for unit_dir in ("etc/systemd/system", "usr/local/lib/systemd/system", "lib/systemd/system"):
        write(debian, f"{unit_dir}/legacy.service", "[Service]\n")
        assert skipped(debian) == ALL, unit_dir
        (debian / unit_dir / "legacy.service").unlink()
    write(debian, "etc/init.d/.hidden", "#!/bin/sh\n", 0o755)  # (the generator ignores it; kept to be safe)
    assert skipped(debian) == ALL - {"systemd-sysv-generator"}


@pytest.mark.parametrize(
    "param", ["systemd.mask=foo.service", "systemd.wants=bar.service", "systemd.debug_shell", "systemd.debug-shell=1"]
)
def test_debug_generator_options_keep_it(debian: Path, param: str) -> None:
    assert skipped(debian, f"{CMDLINE} {param}") == ALL - {"systemd-debug-generator"}


def test_options_only_named_alike_change_nothing(debian: Path) -> None:
    assert skipped(debian, f"{CMDLINE} rd.systemd.mask=foo.service rd.fstab=no xsystemd.swap=1 nofstab=1") == ALL
