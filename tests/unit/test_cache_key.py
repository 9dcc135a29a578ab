"""``vmtest cache key``: one stable hash of the images a test selection needs (nothing is built)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from vmtest import MachineConfig
from vmtest.cli.collect import collect_configs
from vmtest.core.errors import ConfigError
from vmtest.image.kernel import KernelSpec
from vmtest.image.selection import needed_images, selection_key
from vmtest.image.store import image_key

KERNEL = KernelSpec("linux-image-6.1.0-99-amd64", "6.1.999-1")


def test_image_key_is_stable_and_follows_the_image_inputs() -> None:
    base = MachineConfig(packages=["curl"])
    assert image_key(base, KERNEL) == image_key(MachineConfig(packages=["curl"]), KERNEL)
    # what the image holds: a new key
    assert image_key(base.replace(packages=["curl", "jq"]), KERNEL) != image_key(base, KERNEL)
    assert image_key(base.replace(files={"/etc/x": "y"}), KERNEL) != image_key(base, KERNEL)
    assert image_key(base, KernelSpec(KERNEL.package, "6.1.999-2")) != image_key(base, KERNEL)
    # how it runs (memory, cores): the same image
    assert image_key(base.replace(virtualisation={"memory_size": 512, "cores": 2}), KERNEL) == image_key(base, KERNEL)


def test_selection_key_ignores_order_duplicates_and_users() -> None:
    a = MachineConfig(packages=["curl"])
    b = MachineConfig(packages=["nginx-light"])
    one = needed_images([("t1::client", a), ("t2::server", b), ("t3::client", a)], KERNEL)
    assert sorted(len(n.users) for n in one) == [1, 2]
    other = needed_images([("x::s", b), ("y::c", a)], KERNEL)
    assert selection_key(n.key for n in one) == selection_key(n.key for n in other)
    assert len(selection_key(n.key for n in one)) == 32


def test_selection_key_changes_when_an_image_would_be_rebuilt() -> None:
    configs = [("t::a", MachineConfig(packages=["curl"])), ("t::b", MachineConfig())]
    before = selection_key(n.key for n in needed_images(configs, KERNEL))
    changed = [("t::a", MachineConfig(packages=["curl", "jq"])), ("t::b", MachineConfig())]
    assert selection_key(n.key for n in needed_images(changed, KERNEL)) != before
    fewer = configs[:1]
    assert selection_key(n.key for n in needed_images(fewer, KERNEL)) != before


SUITE = textwrap.dedent(
    """
    import pytest
    from vmtest import MachineConfig

    web = MachineConfig(packages=["nginx-light"])
    client = MachineConfig(packages=["curl"])

    @pytest.mark.vmtest(nodes={"server": web, "client": client})
    def test_pair(server, client):
        pass

    @pytest.mark.vmtest(nodes={"machine": client})
    def test_client(machine):
        pass

    def test_no_vm():
        pass
    """
)


def test_collection_finds_the_marked_nodes_without_running_them(tmp_path: Path) -> None:
    (tmp_path / "test_suite.py").write_text(SUITE)
    found = collect_configs([str(tmp_path)])
    names = sorted(user.split("::", 1)[1] for user, _ in found)
    assert names == ["test_client::machine", "test_pair::client", "test_pair::server"]
    packages = sorted(tuple(c.packages) for _, c in found)
    assert packages == [("curl",), ("curl",), ("nginx-light",)]
    only = collect_configs([str(tmp_path)], ["-k", "client"])
    assert [user.split("::", 1)[1] for user, _ in only] == ["test_client::machine"]


def test_a_collection_error_names_the_paths(tmp_path: Path) -> None:
    (tmp_path / "test_broken.py").write_text("import no_such_module_here\n")
    with pytest.raises(ConfigError, match="collection failed"):
        collect_configs([str(tmp_path)])


def test_the_session_summary_says_where_images_came_from(tmp_path: Path) -> None:
    from vmtest.image import ImageStore

    store = ImageStore(tmp_path / "cache")
    store.origins.update({"a" * 32: "cache", "b" * 32: "cache", "c" * 32: "built"})
    assert store.summary() == (
        "images: 2 from the cache, 0 fetched from the remote cache, 1 built (built: cccccccccccc)"
    )
