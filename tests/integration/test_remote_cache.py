"""The read-only remote cache against a local ``python -m http.server`` on 127.0.0.1 serving an exported store:
a missing image is fetched and verified instead of built; a corrupt one is rejected, with the reason, and built."""

from __future__ import annotations

import io
import json
import logging
import re
import subprocess
import tarfile
from pathlib import Path

import pytest

from tests.integration.conftest import seed_base_layer
from vmtest import MachineConfig
from vmtest.core.archive import MANIFEST, describe_entry, write_archive
from vmtest.image import ImageStore

pytestmark = pytest.mark.integration

CONFIG = MachineConfig(packages=["curl"], files={"/etc/motd": "hello from vmtest\n"})  # examples/test_smoke.py's


def corrupt_copy(store: ImageStore, kind: str, key: str, out: Path) -> None:
    """The entry as an archive whose manifest is right but whose root.qcow2 has one flipped byte."""
    record = describe_entry(store.cache, kind, key)
    zstd = subprocess.Popen(["zstd", "-q", "-T0", "-1", "-c"], stdin=subprocess.PIPE, stdout=out.open("wb"))
    assert zstd.stdin is not None
    with tarfile.open(fileobj=zstd.stdin, mode="w|") as tar:
        blob = json.dumps({"format": 1, "entries": [record]}).encode()
        info = tarfile.TarInfo(MANIFEST)
        info.size = len(blob)
        tar.addfile(info, io.BytesIO(blob))
        for f in record["files"]:
            data = bytearray((store.cache.path(kind, key) / f["path"]).read_bytes())
            data[len(data) // 2] ^= 0x40
            info = tarfile.TarInfo(f"{kind}/{key}/{f['path']}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(bytes(data)))
    zstd.stdin.close()
    assert zstd.wait() == 0


def test_fetched_when_good_built_when_corrupt(
    store: ImageStore, http_store: tuple[Path, str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    served, url = http_store
    image = store.get(CONFIG)  # in the shared cache (built there once if missing)
    kernel_key = json.loads((store.cache.path("images", image.key) / "meta.json").read_text())["kernel_key"]
    (served / "kernels").mkdir()
    (served / "images").mkdir()
    log = logging.getLogger("vmtest.test.remote")
    write_archive(store.cache, [("kernels", kernel_key)], served / "kernels" / f"{kernel_key}.tar.zst", log)
    write_archive(store.cache, [("images", image.key)], served / "images" / f"{image.key}.tar.zst", log)

    # an empty cache: kernel and image come from the server, nothing is built
    caplog.clear()  # (the shared cache's image may have been built above)
    fetched = ImageStore(tmp_path / "cache-a", cache_url=url)
    with caplog.at_level(logging.INFO):
        got = fetched.get(CONFIG)
    assert got.key == image.key and fetched.origins == {image.key: "fetched"}
    assert f"fetched kernels/{kernel_key}" in caplog.text and f"fetched images/{image.key}" in caplog.text
    assert "mmdebstrap" not in caplog.text
    with open(got.disk, "rb") as disk:
        assert disk.read(4) == b"QFI\xfb"

    # the server's image is corrupt: rejected with the file and the reason, then built locally
    corrupt_copy(store, "images", image.key, served / "images" / f"{image.key}.tar.zst")
    local = tmp_path / "cache-b"
    local.mkdir()
    (local / "debs").symlink_to(store.cache.debs)  # the packages are on this host already: no download
    seed_base_layer(store, CONFIG, local)  # (and the base layer: the image itself is built here)
    caplog.clear()
    built = ImageStore(local, cache_url=url)
    with caplog.at_level(logging.INFO):
        again = built.get(CONFIG)
    assert re.search(
        rf"remote cache: rejected cache entry images/{image.key} from {re.escape(url)}/images/{image.key}\.tar\.zst: "
        r"root\.qcow2 does not match the manifest.*building it locally",
        caplog.text,
    ), caplog.text[-3000:]
    assert built.origins == {image.key: "built"} and again.key == image.key
    assert "mmdebstrap" in caplog.text
    assert not [p for p in (local / "tmp").iterdir() if p.name.startswith(("download-", "images-"))]


def test_a_machine_restores_a_snapshot_fetched_from_the_remote_cache(
    store: ImageStore, http_store: tuple[Path, str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A fresh cache with the remote cache: the image comes from the server and so does the machine's
    booted snapshot; the machine is restored (no boot), its disk backed by this cache's image."""
    from vmtest import Machine
    from vmtest.vm.restore import Restore, SaveSnapshot

    config = MachineConfig()
    first = Machine("fetched", config, store=store, snapshots=True)  # its snapshot, in the shared cache
    try:
        first.connect()
        start = first.vm.start_path
        if isinstance(start, SaveSnapshot):  # the first run on this host
            assert start.saved is not None
            snapshot = start.saved
        else:
            assert isinstance(start, Restore), start.name
            snapshot = start.snapshot
    finally:
        first.release()
    image = store.get(config)
    kernel_key = json.loads((store.cache.path("images", image.key) / "meta.json").read_text())["kernel_key"]
    served, url = http_store
    log = logging.getLogger("vmtest.test.remote")
    for kind, key in (("kernels", kernel_key), ("images", image.key), ("snapshots", snapshot.key)):
        (served / kind).mkdir()
        write_archive(store.cache, [(kind, key)], served / kind / f"{key}.tar.zst", log)

    fresh = ImageStore(tmp_path / "cache", cache_url=url)
    caplog.clear()
    second = Machine("fetched", config, store=fresh, snapshots=True)
    try:
        with caplog.at_level(logging.INFO):
            assert second.succeed("hostname").strip() == "fetched"
        assert isinstance(second.vm.start_path, Restore), second.vm.start_path.name
        assert f"fetched snapshots/{snapshot.key}" in caplog.text
        assert "mmdebstrap" not in caplog.text
    finally:
        second.release()
    info = subprocess.run(
        ["qemu-img", "info", "--output=json", str(fresh.cache.path("snapshots", snapshot.key) / "disk.qcow2")],
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(info.stdout)["backing-filename"] == str(fresh.cache.path("images", image.key) / "root.qcow2")
