"""An image's build starts from its suite's base layer: the mmdebstrap command lines (pure) and the keys."""

from __future__ import annotations

from pathlib import Path

import pytest

from vmtest import MachineConfig
from vmtest.image import layer
from vmtest.image import store as store_mod
from vmtest.image.kernel import KernelSpec
from vmtest.image.layer import BASE_PACKAGES, layer_argv, layer_key
from vmtest.image.rootfs import image_argv

TARBALL = Path("/cache/layers/abc/root.tar.zst")
DEBS = Path("/cache/debs")


def argv_of(config: MachineConfig) -> list[str]:
    return image_argv(config, TARBALL, DEBS, Path("/w/new-debs"), Path("/w/customize.sh"), Path("/w/root"), False)


def option(argv: list[str], name: str) -> list[str]:
    return [a.split("=", 1)[1] for a in argv if a.startswith(f"--{name}=")]


def test_an_image_without_extra_packages_only_unpacks_the_layer_and_fetches_nothing() -> None:
    argv = argv_of(MachineConfig())
    assert argv[:2] == ["mmdebstrap", "--variant=custom"]
    assert option(argv, "include") == []
    assert "--skip=update" in argv  # not even the package lists
    setup = option(argv, "setup-hook")
    keep = "--numeric-owner --xattrs --xattrs-include=*"
    assert setup[-1] == f'tar --zstd {keep} --exclude=./dev/* -C "$1" -xpf {TARBALL}'
    assert option(argv, "customize-hook")[-1] == 'sh /w/customize.sh "$1"'
    assert argv[-2:] == ["bookworm", "/w/root"]


def test_an_image_installs_only_what_its_layer_lacks() -> None:
    config = MachineConfig(packages=("nginx-light", "kmod", "curl"))  # kmod is a base package
    argv = argv_of(config)
    assert option(argv, "include") == []  # apt installs them in a hook: it orders their installation
    install = option(argv, "customize-hook")[0]
    assert install.endswith('-o DPkg::Chroot-Directory="$1" --yes install curl nginx-light')
    assert 'APT_CONFIG="$MMDEBSTRAP_APT_CONFIG" apt-get' in install
    assert "--skip=update" not in argv
    assert option(argv, "dpkgopt") == list(layer.DPKG_OPTIONS)  # as in the layer: its dpkg.cfg.d says so too


def test_the_layer_is_the_base_packages_with_their_package_lists() -> None:
    pkgs = layer.packages(MachineConfig())
    assert set(BASE_PACKAGES) < set(pkgs) and "qemu-guest-agent" in pkgs  # the default options need it
    argv = layer_argv("trixie", pkgs, DEBS, Path("/t/new-debs"), Path("/t/root.tar.zst"), verbose=False)
    assert argv[:2] == ["mmdebstrap", "--variant=minbase"]
    assert option(argv, "include") == [",".join(pkgs)]
    assert "--skip=cleanup/apt/lists" in argv  # an image's build resolves its packages against them
    assert argv[-2:] == ["trixie", "/t/root.tar.zst"]
    assert "--mode=unshare" in argv and "--skip=essential/unlink" in argv


def test_layer_keys_are_per_suite_and_package_set_and_stable() -> None:
    default = layer.packages(MachineConfig())
    assert layer_key("bookworm", default) == layer_key("bookworm", default)
    assert layer_key("bookworm", default) != layer_key("trixie", default)
    no_agent = layer.packages(MachineConfig(virtualisation={"qemu": {"guest_agent": False}}))
    assert "qemu-guest-agent" not in no_agent
    assert layer_key("bookworm", no_agent) != layer_key("bookworm", default)
    # the test's own packages are not the layer's: every configuration with the default options shares one
    assert layer.packages(MachineConfig(packages=("nginx-light",))) == default


def test_an_image_key_changes_with_its_layer(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = KernelSpec("linux-image-6.1.0-1-amd64", "6.1.4-1")
    before = store_mod.image_key(MachineConfig(), spec)
    monkeypatch.setattr(layer, "layer_key", lambda suite, pkgs: "another layer")
    assert store_mod.image_key(MachineConfig(), spec) != before


def test_a_build_reads_its_own_link_of_the_layer_so_removing_the_entry_does_not_take_it_away(tmp_path: Path) -> None:
    import logging

    from vmtest.core.cache import Cache

    cache = Cache(tmp_path / "cache")
    pkgs = layer.packages(MachineConfig())
    key = layer_key("bookworm", pkgs)

    def fake_layer(tmp: Path) -> dict[str, object]:
        (tmp / layer.TARBALL).write_bytes(b"layer bytes")
        return {}

    cache.build("layers", key, fake_layer, logging.getLogger("test"))  # present: ensure builds nothing
    work = tmp_path / "work"
    work.mkdir()
    mine = layer.ensure(cache, "bookworm", pkgs, logging.getLogger("test"), work / layer.TARBALL)
    assert mine == work / layer.TARBALL and mine.read_bytes() == b"layer bytes"
    cache.remove("layers", key, logging.getLogger("test"))  # --vm-rebuild or gc in another process
    assert mine.read_bytes() == b"layer bytes"
