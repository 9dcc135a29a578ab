"""Free space: checked before a build, a full disk explained (ENOSPC)."""

from __future__ import annotations

from pathlib import Path

import pytest

from vmtest.core.errors import ImageBuildError
from vmtest.image import space


def test_too_little_space_stops_the_build_before_it_starts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    free = space.free_mib(tmp_path)
    assert free is not None and free > 0
    assert space.free_mib(tmp_path / "not" / "yet") == free  # the nearest existing parent counts
    space.check(tmp_path)  # enough (this host has more than NEEDED_MIB free in /tmp)
    monkeypatch.setattr(space, "NEEDED_MIB", free + 1000)
    with pytest.raises(ImageBuildError, match=rf"checking free space: only \d+ MiB free; .*needs about {free + 1000}"):
        space.check(tmp_path)


def test_enospc_is_explained(tmp_path: Path) -> None:
    err = space.explain("E: write error: No space left on device", tmp_path, "running mmdebstrap")
    assert err is not None
    assert str(err).startswith("image build failed while running mmdebstrap: the disk filled up (No space left")
    assert "VMTEST_CACHE_DIR" in str(err)
    assert space.explain("E: some other failure", tmp_path, "x") is None
