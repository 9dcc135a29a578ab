"""The kernel apt picks is asked once per state of apt's lists and pins, not once per process."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
from pathlib import Path

import pytest

from vmtest.core.errors import ImageBuildError
from vmtest.image import kernel, packages

LOGGER = logging.getLogger("test")

needs_apt = pytest.mark.skipif(
    shutil.which("apt-cache") is None or not packages.lists_signature(), reason="no apt lists on this host"
)


def _no_apt(*args, **kwargs):
    raise AssertionError(f"apt was asked: {args}")


@needs_apt
def test_the_answer_is_kept_and_reused_while_apt_state_stays(tmp_path: Path, monkeypatch) -> None:
    saved = tmp_path / "apt-kernel.json"
    spec = kernel.resolve(LOGGER, saved)  # real apt-cache
    assert spec.package.startswith("linux-image-") and spec.version
    kept = json.loads(saved.read_text())
    assert kept["package"] == spec.package and kept["signature"] == packages.policy_signature()
    monkeypatch.setattr(subprocess, "run", _no_apt)
    assert kernel.resolve(LOGGER, saved) == spec  # from the file: apt is not asked


@needs_apt
def test_apt_is_asked_again_when_lists_or_pins_changed_or_the_file_is_torn(tmp_path: Path, monkeypatch) -> None:
    saved = tmp_path / "apt-kernel.json"
    stale = {"signature": "lists of last week", "package": "linux-image-0-amd64", "version": "0"}
    saved.write_text(json.dumps(stale))
    spec = kernel.resolve(LOGGER, saved)
    assert spec.package != "linux-image-0-amd64"
    assert json.loads(saved.read_text())["signature"] == packages.policy_signature()
    saved.write_text('{"signature": ')  # torn, as by a crash in another version
    assert kernel.resolve(LOGGER, saved) == spec
    assert json.loads(saved.read_text())["package"] == spec.package


def test_pins_are_part_of_the_signature(tmp_path: Path) -> None:
    lists, etc = tmp_path / "lists", tmp_path / "etc"
    lists.mkdir()
    (etc / "preferences.d").mkdir(parents=True)
    (lists / "deb.debian.org_debian_dists_bookworm_main_binary-amd64_Packages").write_text("Package: a\n")
    before = packages.policy_signature(lists, etc)
    assert before == packages.policy_signature(lists, etc)
    (etc / "preferences.d" / "kernel").write_text("Package: linux-image-amd64\nPin: release a=bookworm-backports\n")
    pinned = packages.policy_signature(lists, etc)
    assert pinned != before
    (lists / "deb.debian.org_debian_dists_bookworm_main_binary-amd64_Packages").write_text("Package: a\nPackage: b\n")
    assert packages.policy_signature(lists, etc) != pinned


def test_no_answer_from_apt_is_an_error_and_nothing_is_kept(tmp_path: Path, monkeypatch) -> None:
    saved = tmp_path / "apt-kernel.json"

    def empty(*args, **kwargs):
        return subprocess.CompletedProcess(args, 100, "", "E: No packages found")

    monkeypatch.setattr(subprocess, "run", empty)
    with pytest.raises(ImageBuildError, match="apt knows no linux-image-amd64 package"):
        kernel.resolve(LOGGER, saved)
    assert not saved.exists()
