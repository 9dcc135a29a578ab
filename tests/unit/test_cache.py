"""The on-disk cache: entries are complete or absent, builds serialise per key."""

from __future__ import annotations

import fcntl
import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from vmtest.core.cache import Cache, disk_usage

LOG = logging.getLogger("vmtest.test.cache")
DAY = 86400


class Builder:
    """A builder that records its calls and writes one file."""

    def __init__(self, meta: dict[str, Any] | None = None, fail: bool = False) -> None:
        self.calls: list[Path] = []
        self.meta = meta or {}
        self.fail = fail

    def __call__(self, tmp: Path) -> dict[str, Any]:
        self.calls.append(tmp)
        assert tmp.is_dir()
        (tmp / "disk.img").write_bytes(b"x" * 1000)
        if self.fail:
            raise RuntimeError("mmdebstrap exploded")
        return dict(self.meta)


def tmp_contents(cache: Cache) -> list[str]:
    tmp = cache.root / "tmp"
    return sorted(p.name for p in tmp.iterdir()) if tmp.exists() else []


def make_partial(cache: Cache, kind: str, key: str) -> Path:
    """What a build killed with SIGKILL leaves behind: tmp/<kind>-<key>.<random>, no lock held."""
    partial = cache.root / "tmp" / f"{kind}-{key}.k1ll3d"
    partial.mkdir(parents=True)
    (partial / "half-written.img").write_bytes(b"\0" * 100)
    return partial


def age(cache: Cache, kind: str, key: str, days: float) -> None:
    meta = cache.path(kind, key) / "meta.json"
    then = time.time() - days * DAY
    os.utime(meta, (then, then))


# -- build / lookup -------------------------------------------------------------------


def test_build_then_hit(tmp_path: Path) -> None:
    cache = Cache(tmp_path)
    builder = Builder({"kernel_key": "k1"})
    path = cache.build("images", "abc", builder, LOG)
    assert path == tmp_path / "images" / "abc"
    assert len(builder.calls) == 1
    assert builder.calls[0].parent == tmp_path / "tmp"
    assert builder.calls[0].name.startswith("images-abc.")
    assert (path / "disk.img").read_bytes() == b"x" * 1000
    meta = json.loads((path / "meta.json").read_text())
    assert meta["kind"] == "images" and meta["key"] == "abc" and meta["kernel_key"] == "k1"
    assert abs(meta["created"] - time.time()) < 60
    assert tmp_contents(cache) == []

    again = Builder()
    assert cache.build("images", "abc", again, LOG) == path
    assert again.calls == []
    assert cache.lookup("images", "abc") == path
    assert cache.lookup("images", "other") is None
    assert cache.lookup("kernels", "abc") is None


def test_lookup_marks_entry_used(tmp_path: Path) -> None:
    cache = Cache(tmp_path)
    cache.build("images", "abc", Builder(), LOG)
    age(cache, "images", "abc", 10)
    (entry,) = cache.entries()
    assert time.time() - entry.last_used > 9 * DAY
    cache.lookup("images", "abc")
    (entry,) = cache.entries()
    assert time.time() - entry.last_used < 60


def test_failing_builder_leaves_nothing(tmp_path: Path) -> None:
    cache = Cache(tmp_path)
    builder = Builder(fail=True)
    with pytest.raises(RuntimeError, match="exploded"):
        cache.build("images", "abc", builder, LOG)
    assert len(builder.calls) == 1
    assert not builder.calls[0].exists()
    assert tmp_contents(cache) == []
    assert cache.lookup("images", "abc") is None
    assert not cache.path("images", "abc").exists()
    assert cache.entries() == []
    # The key is not poisoned: the next build runs.
    good = Builder()
    assert cache.build("images", "abc", good, LOG).is_dir()
    assert len(good.calls) == 1


def test_keyboard_interrupt_in_builder_cleans_up(tmp_path: Path) -> None:
    cache = Cache(tmp_path)

    def builder(tmp: Path) -> dict[str, Any]:
        (tmp / "x").write_text("partial")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        cache.build("kernels", "k", builder, LOG)
    assert tmp_contents(cache) == []
    assert cache.entries() == []


def test_entries(tmp_path: Path) -> None:
    cache = Cache(tmp_path)
    cache.build("images", "i1", Builder({"kernel_key": "k1"}), LOG)
    cache.build("kernels", "k1", Builder(), LOG)
    (tmp_path / "images" / "no-meta").mkdir()  # not complete: not an entry
    entries = cache.entries()
    assert [(e.kind, e.key) for e in entries] == [("images", "i1"), ("kernels", "k1")]
    assert entries[0].meta["kernel_key"] == "k1"
    assert entries[0].path == tmp_path / "images" / "i1"
    assert entries[0].size >= 1000


# -- partial builds ---------------------------------------------------------------------


def test_partial_build_not_an_entry_and_reported_inactive(tmp_path: Path) -> None:
    cache = Cache(tmp_path)
    partial = make_partial(cache, "images", "abc")
    assert cache.entries() == []
    assert cache.lookup("images", "abc") is None
    assert cache.partial_builds() == [(partial, False)]
    # Same when the lock file exists but nobody holds it (the builder was killed).
    (tmp_path / "locks").mkdir()
    (tmp_path / "locks" / "images-abc.lock").touch()
    assert cache.partial_builds() == [(partial, False)]


def test_partial_build_with_held_lock_is_active(tmp_path: Path) -> None:
    cache = Cache(tmp_path)
    partial = make_partial(cache, "images", "abc")
    (tmp_path / "locks").mkdir()
    with open(tmp_path / "locks" / "images-abc.lock", "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        assert cache.partial_builds() == [(partial, True)]
        assert not any("partial" in r for r in cache.gc(max_age_days=0))
        assert partial.exists()
    assert cache.partial_builds() == [(partial, False)]


def test_gc_removes_partial_build(tmp_path: Path) -> None:
    cache = Cache(tmp_path)
    partial = make_partial(cache, "images", "abc")
    other = make_partial(cache, "kernels", "k9")
    removed = cache.gc(max_age_days=30)
    assert sorted(removed) == ["partial build images-abc.k1ll3d", "partial build kernels-k9.k1ll3d"]
    assert not partial.exists() and not other.exists()
    assert cache.partial_builds() == []


def test_next_build_removes_partial_build_of_its_key(tmp_path: Path) -> None:
    cache = Cache(tmp_path)
    partial = make_partial(cache, "images", "abc")
    unrelated = make_partial(cache, "images", "abd")
    builder = Builder()
    path = cache.build("images", "abc", builder, LOG)
    assert len(builder.calls) == 1
    assert not partial.exists()
    assert unrelated.exists()
    assert not (path / "half-written.img").exists()
    assert tmp_contents(cache) == ["images-abd.k1ll3d"]


# -- concurrency ---------------------------------------------------------------------------


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_concurrent_builds_of_one_key_build_once(tmp_path: Path) -> None:
    cache = Cache(tmp_path)
    logger = logging.getLogger("vmtest.test.cache.concurrent")
    records = Records()
    logger.addHandler(records)
    started = threading.Event()
    release = threading.Event()
    calls: list[str] = []

    def builder(tmp: Path) -> dict[str, Any]:
        calls.append(threading.current_thread().name)
        started.set()
        assert release.wait(5)
        (tmp / "disk.img").write_text("done")
        return {}

    results: dict[str, Path] = {}
    errors: list[BaseException] = []

    def build(name: str) -> None:
        try:
            results[name] = cache.build("images", "abc", builder, logger)
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    first = threading.Thread(target=build, args=("first",), name="first")
    second = threading.Thread(target=build, args=("second",), name="second")
    try:
        first.start()
        assert started.wait(5)
        second.start()
        # Wait until the second builder is really blocked on the key's lock.
        deadline = time.monotonic() + 5
        while not any("another process is building" in m for m in records.messages):
            assert time.monotonic() < deadline, "the second build did not wait for the lock"
            time.sleep(0.005)
        release.set()
        first.join(5)
        second.join(5)
    finally:
        release.set()
        logger.removeHandler(records)
    assert errors == []
    assert calls == ["first"]
    assert results["first"] == results["second"] == tmp_path / "images" / "abc"
    assert (results["second"] / "disk.img").read_text() == "done"
    assert tmp_contents(cache) == []


# -- remove -----------------------------------------------------------------------------------


def test_remove(tmp_path: Path) -> None:
    cache = Cache(tmp_path)
    path = cache.build("images", "abc", Builder(), LOG)
    cache.build("images", "keep", Builder(), LOG)
    cache.remove("images", "abc", LOG)
    assert not path.exists()
    assert cache.lookup("images", "abc") is None
    assert [e.key for e in cache.entries()] == ["keep"]
    assert tmp_contents(cache) == []
    cache.remove("images", "abc", LOG)  # already gone: no error
    rebuilt = Builder()
    cache.build("images", "abc", rebuilt, LOG)
    assert len(rebuilt.calls) == 1


# -- gc -------------------------------------------------------------------------------------------


def test_gc_removes_old_images_and_unreferenced_kernels(tmp_path: Path) -> None:
    cache = Cache(tmp_path)
    cache.build("images", "old-image", Builder({"kernel_key": "k-old"}), LOG)
    cache.build("images", "new-image", Builder({"kernel_key": "k-shared"}), LOG)
    cache.build("kernels", "k-old", Builder(), LOG)
    cache.build("kernels", "k-shared", Builder(), LOG)
    cache.build("kernels", "k-orphan", Builder(), LOG)
    age(cache, "images", "old-image", 10)
    for kernel in ("k-old", "k-shared", "k-orphan"):
        age(cache, "kernels", kernel, 10)  # kernels are used only when an image is built

    removed = cache.gc(max_age_days=7)

    assert sorted(removed) == ["images/old-image", "kernels/k-old", "kernels/k-orphan"]
    assert [(e.kind, e.key) for e in cache.entries()] == [("images", "new-image"), ("kernels", "k-shared")]
    assert not cache.path("images", "old-image").exists()
    assert not cache.path("kernels", "k-old").exists()


def test_gc_keeps_recent_entries(tmp_path: Path) -> None:
    cache = Cache(tmp_path)
    cache.build("images", "i", Builder({"kernel_key": "k"}), LOG)
    cache.build("kernels", "k", Builder(), LOG)
    cache.build("kernels", "k-unreferenced-but-fresh", Builder(), LOG)
    age(cache, "images", "i", 6)
    assert cache.gc(max_age_days=7) == []
    assert len(cache.entries()) == 3


def test_gc_everything(tmp_path: Path) -> None:
    cache = Cache(tmp_path)
    cache.build("images", "i", Builder({"kernel_key": "k"}), LOG)
    cache.build("kernels", "k", Builder(), LOG)
    (cache.debs / "foo.deb").write_bytes(b"deb")
    removed = cache.gc(max_age_days=365, everything=True)
    assert sorted(removed) == ["debs", "images/i", "kernels/k"]
    assert cache.entries() == []
    assert not (tmp_path / "debs").exists()


def test_gc_removes_snapshots_that_are_old_or_whose_image_goes(tmp_path: Path) -> None:
    cache = Cache(tmp_path)
    cache.build("images", "old-image", Builder({"kernel_key": "k"}), LOG)
    cache.build("images", "kept-image", Builder({"kernel_key": "k"}), LOG)
    cache.build("kernels", "k", Builder(), LOG)
    cache.build("snapshots", "of-old-image", Builder({"image_key": "old-image"}), LOG)
    cache.build("snapshots", "old-of-kept-image", Builder({"image_key": "kept-image"}), LOG)
    cache.build("snapshots", "fresh-of-kept-image", Builder({"image_key": "kept-image"}), LOG)
    cache.build("snapshots", "of-a-missing-image", Builder({"image_key": "gone"}), LOG)
    age(cache, "images", "old-image", 10)
    age(cache, "snapshots", "old-of-kept-image", 10)

    removed = cache.gc(max_age_days=7)

    assert sorted(removed) == [
        "images/old-image",
        "snapshots/of-a-missing-image",
        "snapshots/of-old-image",
        "snapshots/old-of-kept-image",
    ]
    assert sorted(e.key for e in cache.entries()) == ["fresh-of-kept-image", "k", "kept-image"]


def test_a_reservation_is_exclusive_and_publishes_or_leaves_nothing(tmp_path: Path) -> None:
    cache = Cache(tmp_path)
    held = cache.reserve("snapshots", "s")
    assert held is not None and held.tmp.is_dir()
    assert cache.reserve("snapshots", "s") is None  # another saver does not wait: it gets nothing
    (held.tmp / "state").write_bytes(b"saved")
    held.abandon()
    assert cache.lookup("snapshots", "s") is None and tmp_contents(cache) == []
    again = cache.reserve("snapshots", "s")
    assert again is not None
    (again.tmp / "state").write_bytes(b"saved")
    path = again.publish({"image_key": "i"})
    assert cache.lookup("snapshots", "s") == path and (path / "state").read_bytes() == b"saved"
    assert cache.reserve("snapshots", "s") is not None  # the lock was let go


def test_gc_removes_bootable_disks_that_are_old_or_whose_image_goes(tmp_path: Path) -> None:
    cache = Cache(tmp_path)
    cache.build("images", "old-image", Builder({"kernel_key": "k"}), LOG)
    cache.build("images", "kept-image", Builder({"kernel_key": "k"}), LOG)
    cache.build("kernels", "k", Builder(), LOG)
    cache.build("bootdisks", "of-old-image", Builder({"image_key": "old-image"}), LOG)
    cache.build("bootdisks", "old-of-kept-image", Builder({"image_key": "kept-image"}), LOG)
    cache.build("bootdisks", "fresh-of-kept-image", Builder({"image_key": "kept-image"}), LOG)
    age(cache, "images", "old-image", 10)
    age(cache, "bootdisks", "old-of-kept-image", 10)

    removed = cache.gc(max_age_days=7)

    assert sorted(removed) == ["bootdisks/of-old-image", "bootdisks/old-of-kept-image", "images/old-image"]
    assert sorted(e.key for e in cache.entries()) == ["fresh-of-kept-image", "k", "kept-image"]


def test_gc_removes_the_snapshots_of_a_bootable_disk_with_it(tmp_path: Path) -> None:
    """A boot-loader machine's snapshot is an overlay on its bootable disk (its meta names the disk): it goes
    when the disk goes (old, or its image going), and stays while the disk stays."""
    cache = Cache(tmp_path)
    cache.build("kernels", "k", Builder(), LOG)
    for image, days in (("i", 0), ("old-image", 10)):
        cache.build("images", image, Builder({"kernel_key": "k"}), LOG)
        age(cache, "images", image, days)
    for disk, image, days in (("b", "i", 0), ("old-b", "i", 10), ("b-of-old-image", "old-image", 0)):
        cache.build("bootdisks", disk, Builder({"image_key": image}), LOG)
        age(cache, "bootdisks", disk, days)
        cache.build("snapshots", f"s-on-{disk}", Builder({"image_key": disk}), LOG)
    cache.build("snapshots", "s-on-a-gone-disk", Builder({"image_key": "gone"}), LOG)

    old_disks = {"bootdisks/old-b", "bootdisks/b-of-old-image"}
    on_them = {"snapshots/s-on-old-b", "snapshots/s-on-b-of-old-image", "snapshots/s-on-a-gone-disk"}
    assert set(cache.gc(max_age_days=7)) == old_disks | on_them | {"images/old-image"}
    assert sorted(f"{e.kind}/{e.key}" for e in cache.entries()) == [
        "bootdisks/b",
        "images/i",
        "kernels/k",
        "snapshots/s-on-b",
    ]


# -- trim (the size bound) ---------------------------------------------------------------------------


def sizes(cache: Cache) -> dict[str, int]:
    return {f"{e.kind}/{e.key}": e.size for e in cache.entries()}


def test_trim_removes_least_recently_used_snapshots_and_bootable_disks_first(tmp_path: Path) -> None:
    cache = Cache(tmp_path)
    cache.build("kernels", "k", Builder(), LOG)
    for image in ("i", "j"):
        cache.build("images", image, Builder({"kernel_key": "k"}), LOG)
    for key, image, days in (("s-of-j", "j", 9), ("s1", "i", 5), ("s2", "i", 3)):
        cache.build("snapshots", key, Builder({"image_key": image}), LOG)
        age(cache, "snapshots", key, days)
    cache.build("bootdisks", "b", Builder({"image_key": "i"}), LOG)
    age(cache, "bootdisks", "b", 4)
    age(cache, "images", "j", 10)  # older than every snapshot, yet an image goes only after them
    before = sizes(cache)
    total = sum(before.values())
    bound = total - before["snapshots/s-of-j"] - before["snapshots/s1"]

    removed = cache.trim(bound, used_since=time.time() - 60)

    assert removed == [("snapshots/s-of-j", before["snapshots/s-of-j"]), ("snapshots/s1", before["snapshots/s1"])]
    assert sum(sizes(cache).values()) <= bound
    assert sorted(sizes(cache)) == ["bootdisks/b", "images/i", "images/j", "kernels/k", "snapshots/s2"]


def test_trim_then_removes_images_with_what_was_made_of_them_and_then_unused_kernels(tmp_path: Path) -> None:
    cache = Cache(tmp_path)
    cache.build("kernels", "k-old", Builder(), LOG)
    cache.build("kernels", "k-new", Builder(), LOG)
    cache.build("images", "old", Builder({"kernel_key": "k-old"}), LOG)
    cache.build("images", "this-sessions", Builder({"kernel_key": "k-new"}), LOG)
    cache.build("images", "old-with-a-fresh-snapshot", Builder({"kernel_key": "k-new"}), LOG)
    cache.build("snapshots", "fresh", Builder({"image_key": "old-with-a-fresh-snapshot"}), LOG)
    for kind, key in (
        ("kernels", "k-old"),
        ("kernels", "k-new"),
        ("images", "old"),
        ("images", "old-with-a-fresh-snapshot"),
    ):
        age(cache, kind, key, 2)
    session_start = time.time() - 3600  # "this-sessions" and "fresh" were used since

    removed = [item for item, _ in cache.trim(1, used_since=session_start)]

    # every entry this session did not use goes, but an image stays with this session's snapshot of it,
    # and a kernel with an image that stays
    assert removed == ["images/old", "kernels/k-old"]
    assert sorted(sizes(cache)) == [
        "images/old-with-a-fresh-snapshot",
        "images/this-sessions",
        "kernels/k-new",
        "snapshots/fresh",
    ]


def test_trim_without_a_bound_or_under_it_removes_nothing(tmp_path: Path) -> None:
    cache = Cache(tmp_path)
    cache.build("images", "i", Builder({"kernel_key": "k"}), LOG)
    age(cache, "images", "i", 30)
    assert cache.trim(0, used_since=time.time()) == []
    assert cache.trim(sum(sizes(cache).values()), used_since=time.time()) == []
    assert sorted(sizes(cache)) == ["images/i"]


def test_gc_removes_unused_base_layers_and_trim_takes_them_before_images(tmp_path: Path) -> None:
    cache = Cache(tmp_path)
    cache.build("kernels", "k", Builder(), LOG)
    cache.build("images", "i", Builder({"kernel_key": "k"}), LOG)
    cache.build("layers", "old", Builder({"suite": "bookworm"}), LOG)
    cache.build("layers", "new", Builder({"suite": "trixie"}), LOG)
    age(cache, "layers", "old", 10)
    age(cache, "images", "i", 20)  # older than the layer, yet the layer goes first: only builds read it
    age(cache, "kernels", "k", 20)

    before = sizes(cache)
    removed = cache.trim(sum(before.values()) - before["layers/old"], used_since=time.time() - 60)
    assert removed == [("layers/old", before["layers/old"])]

    cache.build("layers", "old", Builder({"suite": "bookworm"}), LOG)
    age(cache, "layers", "old", 10)
    assert cache.gc(max_age_days=7) == ["images/i", "layers/old", "kernels/k"]
    assert [(e.kind, e.key) for e in cache.entries()] == [("layers", "new")]


def test_removing_an_image_for_a_rebuild_removes_what_was_made_of_it(tmp_path: Path) -> None:
    # A rebuilt image of the same key is another file system: snapshots whose disks are overlays on the old
    # one read garbage through it (CI run 8 of 6 Dec: "EXT4-fs error ... no /lib/systemd/systemd").
    cache = Cache(tmp_path)
    for image in ("i", "j"):
        cache.build("images", image, Builder({"kernel_key": "k"}), LOG)
    cache.build("snapshots", "s-of-i", Builder({"image_key": "i"}), LOG)
    cache.build("snapshots", "s-of-j", Builder({"image_key": "j"}), LOG)
    cache.build("bootdisks", "b-of-i", Builder({"image_key": "i"}), LOG)

    assert sorted(cache.remove_image("i", LOG)) == ["bootdisks/b-of-i", "snapshots/s-of-i"]
    assert sorted(f"{e.kind}/{e.key}" for e in cache.entries()) == ["images/j", "snapshots/s-of-j"]


def test_removing_an_image_removes_the_snapshots_of_its_bootable_disks_and_trim_drops_them_with_the_disk(
    tmp_path: Path,
) -> None:
    cache = Cache(tmp_path)
    cache.build("kernels", "k", Builder(), LOG)
    cache.build("images", "i", Builder({"kernel_key": "k"}), LOG)
    cache.build("bootdisks", "b", Builder({"image_key": "i"}), LOG)
    cache.build("snapshots", "s-on-b", Builder({"image_key": "b"}), LOG)
    assert sorted(cache.remove_image("i", LOG)) == ["bootdisks/b", "snapshots/s-on-b"]

    cache.build("images", "i", Builder({"kernel_key": "k"}), LOG)
    cache.build("bootdisks", "b", Builder({"image_key": "i"}), LOG)
    cache.build("snapshots", "s-on-b", Builder({"image_key": "b"}), LOG)
    age(cache, "bootdisks", "b", 5)  # older than its snapshot: the disk goes first, its snapshot with it
    age(cache, "snapshots", "s-on-b", 1)
    before = sizes(cache)
    removed = cache.trim(sum(before.values()) - before["bootdisks/b"], used_since=time.time() - 60)
    assert [entry for entry, _ in removed] == ["snapshots/s-on-b", "bootdisks/b"]
    assert sorted(sizes(cache)) == ["images/i", "kernels/k"]


def test_disk_usage_of_a_directory_and_of_a_file(tmp_path: Path) -> None:
    """A file counts its allocated blocks (an export's archive is one file: its size was printed as 0 MiB)."""
    data = tmp_path / "d" / "data"
    data.parent.mkdir()
    data.write_bytes(os.urandom(3 << 20))
    sparse = tmp_path / "d" / "sparse"
    with open(sparse, "wb") as fh:
        fh.truncate(64 << 20)  # allocates nothing
    assert disk_usage(data) >> 20 == 3
    assert disk_usage(sparse) < 1 << 20
    assert 3 << 20 <= disk_usage(tmp_path / "d") < 4 << 20
    assert disk_usage(tmp_path / "missing") == 0
