"""Bad input caught before work: misspelt packages (the host's real apt lists), missing host paths,
services the image does not have."""

from __future__ import annotations

import logging
import os
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from vmtest import MachineConfig
from vmtest.config.machine import host_suite
from vmtest.core.errors import ConfigError, ImageBuildError
from vmtest.core.proc import ProcessError
from vmtest.image import packages
from vmtest.image.rootfs import _explain_mmdebstrap, _service_checks
from vmtest.vm.disks import check_host

LOG = logging.getLogger("test")
SAVED = Path(tempfile.gettempdir()) / f"unit-apt-names-of-vmtest-{os.getuid()}.txt"  # kept while the lists stay
NEEDS_LISTS = pytest.mark.skipif(not packages.has_lists(host_suite()), reason="the host has no apt lists")


@NEEDS_LISTS
def test_a_misspelt_package_is_a_config_error_naming_the_closest_in_under_a_second() -> None:
    saved = SAVED
    with pytest.raises(ConfigError):
        packages.check(["ngnix-light"], host_suite(), LOG, saved)  # the first one asks apt (1-3 s)
    packages.known_names.cache_clear()  # a new run: the names come from the saved file
    start = time.monotonic()
    with pytest.raises(ConfigError) as info:
        packages.check(["curl", "ngnix-light"], host_suite(), LOG, saved)
    took = time.monotonic() - start
    assert info.value.field == "packages" and info.value.value == "ngnix-light"
    assert "did you mean nginx-light?" in str(info.value)
    assert took < 2.0, took  # ~0.1-0.3 s; slack for a loaded host (the build it saves takes 15 s or more)


@NEEDS_LISTS
def test_real_virtual_and_qualified_names_pass() -> None:
    packages.check(["nginx-light", "awk", "curl=7.88*", "libc6:amd64"], host_suite(), LOG, SAVED)


def test_without_lists_for_the_suite_nothing_is_checked(tmp_path: Path) -> None:
    assert not packages.has_lists("no-such-suite")
    packages.check(["ngnix-light"], "no-such-suite", LOG)  # cannot tell: no error, the build will say
    assert not packages.has_lists("bookworm", tmp_path)


def test_closest_is_none_for_nonsense() -> None:
    assert packages.closest("qqqqqqqqqqqqqqqq", frozenset({"nginx", "curl"})) is None
    assert packages.closest("crul", frozenset({"nginx", "curl"})) == "curl"


def test_a_missing_drive_file_is_a_config_error_naming_the_option(tmp_path: Path) -> None:
    cfg = MachineConfig(virtualisation={"qemu": {"drives": [{"file": str(tmp_path / "gone.qcow2")}]}})
    with pytest.raises(ConfigError, match=r"virtualisation.qemu.drives\[0\].file=.*gone.qcow2.*no such file"):
        check_host(cfg)


def test_a_shared_directory_removed_after_configuration_is_named(tmp_path: Path) -> None:
    share = tmp_path / "share"
    share.mkdir()
    cfg = MachineConfig(virtualisation={"shared_directories": {"data": {"source": str(share), "target": "/data"}}})
    share.rmdir()
    with pytest.raises(ConfigError, match=r"shared_directories\['data'\].source=.*no such directory"):
        check_host(cfg)


def test_a_service_the_image_lacks_fails_the_build_naming_it(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "usr/lib/systemd/system").mkdir(parents=True)
    (root / "usr/lib/systemd/system/getty@.service").write_text("")
    (root / "etc/systemd/system").mkdir(parents=True)
    (root / "etc/systemd/system/mine.service").write_text("")
    script = "\n".join(_service_checks(["mine.service", "getty@tty1.service"]))
    assert subprocess.run(["sh", "-c", 'root="$1"\n' + script, "sh", root], check=False).returncode == 0
    script = "\n".join(_service_checks(["mine.service", "ngnix.service"]))
    done = subprocess.run(["sh", "-c", 'root="$1"\n' + script, "sh", root], capture_output=True, text=True)
    assert done.returncode == 1
    err = _explain_mmdebstrap(
        ProcessError("mmdebstrap", ["mmdebstrap"], 1, done.stdout.splitlines()),
        MachineConfig(services=["mine.service", "ngnix.service"]),
    )
    assert isinstance(err, ImageBuildError)
    assert "services=['mine.service', 'ngnix.service']: the image has no unit ngnix.service" in str(err)
