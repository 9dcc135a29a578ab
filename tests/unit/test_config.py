"""MachineConfig / Virtualisation validation and the image content key."""

from __future__ import annotations

import dataclasses

import pytest

from vmtest.config.machine import File, MachineConfig
from vmtest.config.virtualisation import Virtualisation
from vmtest.core.errors import ConfigError, VmtestError


def config_error(**kwargs: object) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        MachineConfig(**kwargs)
    return info.value


# -- unknown fields ----------------------------------------------------------


def test_unknown_field_names_field_and_suggests_close_match() -> None:
    err = config_error(pacakges=["nginx"])
    assert err.field == "pacakges"
    assert err.value == ["nginx"]
    assert "unknown MachineConfig field" in str(err)
    assert "did you mean 'packages'?" in str(err)
    assert str(err).startswith("pacakges=['nginx']")


def test_unknown_field_without_close_match_lists_known_fields() -> None:
    err = config_error(zzzzzz=1)
    assert err.field == "zzzzzz"
    assert "did you mean" not in str(err)
    for name in ("suite", "packages", "services", "units", "files", "kernel_params", "virtualisation"):
        assert name in err.fix


def test_config_error_is_a_vmtest_error() -> None:
    assert isinstance(config_error(pacakges=[]), VmtestError)


# -- suite --------------------------------------------------------------------


@pytest.mark.parametrize("suite", ["Bookworm", "", "book worm", "1bookworm", 12])
def test_invalid_suite(suite: object) -> None:
    err = config_error(suite=suite)
    assert err.field == "suite"
    assert "not a Debian suite name" in str(err)


def test_valid_suite_kept() -> None:
    assert MachineConfig(suite="trixie").suite == "trixie"


# -- packages -----------------------------------------------------------------


def test_packages_as_single_string_rejected_with_fix() -> None:
    err = config_error(packages="nginx")
    assert err.field == "packages"
    assert "single string" in err.why
    assert "packages=['nginx']" in err.fix


@pytest.mark.parametrize("bad", [42, None, {"nginx": 1}])
def test_packages_wrong_type(bad: object) -> None:
    err = config_error(packages=bad)
    assert err.field == "packages"
    assert "expected a list of strings" in err.why


def test_packages_non_string_entry() -> None:
    err = config_error(packages=["nginx", 3])
    assert err.field == "packages"
    assert "3 is a int" in err.why


@pytest.mark.parametrize("name", ["Nginx", "foo bar", "a", "-foo", "foo_bar", "nginx;rm", ""])
def test_invalid_package_name(name: str) -> None:
    err = config_error(packages=["curl", name])
    assert err.field == "packages"
    assert err.value == name
    assert "not a valid Debian package name" in str(err)


@pytest.mark.parametrize(
    "name", ["nginx", "g++", "libc6:amd64", "foo=1:2.0-1~bpo12+1", "foo/bookworm-backports", "python3.11"]
)
def test_valid_package_names(name: str) -> None:
    assert MachineConfig(packages=[name]).packages == (name,)


def test_packages_sorted_and_deduplicated() -> None:
    cfg = MachineConfig(packages=["zsh", "curl", "zsh", "bash", "curl"])
    assert cfg.packages == ("bash", "curl", "zsh")
    assert isinstance(cfg.packages, tuple)


# -- files ----------------------------------------------------------------------


@pytest.mark.parametrize("path", ["etc/motd", "./etc/motd"])
def test_relative_guest_path_suggests_absolute(path: str) -> None:
    err = config_error(files={path: "hello"})
    assert err.field == "files"
    assert err.value == path
    assert "absolute" in err.why
    assert "'/etc/motd'" in err.fix


def test_relative_dotfile_path_hint_keeps_the_dot() -> None:
    err = config_error(files={".config/foo": "x"})
    assert "'/.config/foo'" in err.fix


@pytest.mark.parametrize("path", ["/etc/../shadow", "/../x", "/a/b/.."])
def test_dotdot_in_guest_path_rejected(path: str) -> None:
    err = config_error(files={path: "x"})
    assert err.field == "files"
    assert "'..'" in err.why


def test_root_is_not_a_file() -> None:
    err = config_error(files={"/": "x"})
    assert err.field == "files"


def test_non_string_guest_path() -> None:
    err = config_error(files={42: "x"})
    assert err.field == "files"
    assert "must be strings" in err.why


def test_files_str_bytes_and_file_normalised() -> None:
    cfg = MachineConfig(files={"/etc/a": "text", "/etc/b": b"\x00bin", "/usr/local/bin/c": File("#!/bin/sh\n", 0o755)})
    assert cfg.files["/etc/a"] == File("text", 0o644)
    assert cfg.files["/etc/b"] == File(b"\x00bin", 0o644)
    assert cfg.files["/usr/local/bin/c"].mode == 0o755
    assert cfg.files["/etc/a"].data() == b"text"


def test_files_path_normalised() -> None:
    cfg = MachineConfig(files={"/etc//x/./y": "z"})
    assert list(cfg.files) == ["/etc/x/y"]


def test_file_content_wrong_type() -> None:
    err = config_error(files={"/etc/x": 42})
    assert err.field == "files['/etc/x']"
    assert "File(" in err.fix


@pytest.mark.parametrize("mode", [0o10000, -1, "0644"])
def test_file_mode_out_of_range(mode: object) -> None:
    err = config_error(files={"/etc/x": File("a", mode)})  # type: ignore[arg-type]
    assert err.field == "files['/etc/x'].mode"


def test_files_must_be_a_mapping() -> None:
    err = config_error(files=["/etc/x"])
    assert err.field == "files"
    assert "expected a dict" in err.why


# -- services and units -------------------------------------------------------


def test_services_normalised() -> None:
    cfg = MachineConfig(services=["nginx", "foo.socket", "getty@tty1", "backup.timer"])
    assert cfg.services == ("nginx.service", "foo.socket", "getty@tty1.service", "backup.timer")


@pytest.mark.parametrize("name", ["foo bar", "foo.bogus", "", "a/b", 7])
def test_invalid_service_name(name: object) -> None:
    err = config_error(services=["ok", name])
    assert err.field == "services"


def test_invalid_unit_name_in_units() -> None:
    err = config_error(units={"bad name": "[Service]\n"})
    assert err.field == "units"
    assert err.value == "bad name"
    assert "not a valid systemd unit name" in err.why


def test_units_normalised() -> None:
    cfg = MachineConfig(units={"app": "[Service]\nExecStart=/bin/true\n", "x.socket": "[Socket]\n"})
    assert dict(cfg.units) == {"app.service": "[Service]\nExecStart=/bin/true\n", "x.socket": "[Socket]\n"}


@pytest.mark.parametrize("text", [b"[Service]\n", 42, None])
def test_unit_text_must_be_str(text: object) -> None:
    err = config_error(units={"app.service": text})
    assert err.field == "units['app.service']"
    assert err.value == text
    assert "must be a string" in err.why


# -- kernel params, build commands ------------------------------------------------


def test_kernel_params_string_split() -> None:
    cfg = MachineConfig(kernel_params="quiet  loglevel=3\tfoo=bar")
    assert cfg.kernel_params == ("quiet", "loglevel=3", "foo=bar")


def test_kernel_params_list_kept_in_order() -> None:
    assert MachineConfig(kernel_params=["b=1", "a=2"]).kernel_params == ("b=1", "a=2")


def test_build_commands_single_string_rejected() -> None:
    err = config_error(build_commands="apt-get update")
    assert err.field == "build_commands"


# -- virtualisation -----------------------------------------------------------------


def test_virtualisation_default() -> None:
    virt = MachineConfig().virtualisation
    assert virt == Virtualisation()
    assert (virt.memory_size, virt.cores, virt.graphics, virt.resolution) == (1024, 1, True, (1024, 768))


def test_virtualisation_as_dict() -> None:
    cfg = MachineConfig(virtualisation={"memory_size": 2048, "cores": 4, "resolution": [800, 600]})
    assert isinstance(cfg.virtualisation, Virtualisation)
    assert cfg.virtualisation == Virtualisation(memory_size=2048, cores=4, resolution=(800, 600))
    assert cfg.virtualisation.resolution == (800, 600)


def test_virtualisation_as_object() -> None:
    virt = Virtualisation(graphics=False)
    cfg = MachineConfig(virtualisation=virt)
    assert cfg.virtualisation is virt


def test_unknown_virtualisation_option() -> None:
    err = config_error(virtualisation={"memorysize": 512})
    assert err.field == "virtualisation.memorysize"
    assert "unknown option" in err.why
    assert "did you mean 'memory_size'?" in err.fix


def test_unknown_virtualisation_option_without_close_match() -> None:
    with pytest.raises(ConfigError) as info:
        Virtualisation.from_dict({"qqqqq": 1})
    assert info.value.field == "virtualisation.qqqqq"
    assert "memory_size" in info.value.fix


@pytest.mark.parametrize("size", [64, 127, (1 << 20) + 1])
def test_memory_size_out_of_range(size: int) -> None:
    err = config_error(virtualisation={"memory_size": size})
    assert err.field == "virtualisation.memory_size"
    assert "out of range 128..1048576 MiB" in err.why


@pytest.mark.parametrize("size", [128, 1 << 20])
def test_memory_size_bounds_accepted(size: int) -> None:
    assert MachineConfig(virtualisation={"memory_size": size}).virtualisation.memory_size == size


def test_bool_cores_rejected() -> None:
    err = config_error(virtualisation={"cores": True})
    assert err.field == "virtualisation.cores"
    assert "got bool" in err.why
    with pytest.raises(ConfigError):
        Virtualisation(cores=True)


@pytest.mark.parametrize(
    "options, field",
    [
        ({"cores": 0}, "virtualisation.cores"),
        ({"cores": 2.0}, "virtualisation.cores"),
        ({"graphics": 1}, "virtualisation.graphics"),
        ({"resolution": (100, 100)}, "virtualisation.resolution"),
        ({"resolution": (1024,)}, "virtualisation.resolution"),
    ],
)
def test_invalid_virtualisation_values(options: dict, field: str) -> None:
    assert config_error(virtualisation=options).field == field


def test_virtualisation_wrong_type() -> None:
    err = config_error(virtualisation=[("cores", 2)])
    assert err.field == "virtualisation"


# -- image_inputs -------------------------------------------------------------------

BASE = dict(
    suite="bookworm",
    packages=["nginx", "curl"],
    services=["nginx"],
    units={"app": "[Service]\nExecStart=/bin/true\n"},
    files={"/etc/motd": "hello\n", "/usr/local/bin/x": File("#!/bin/sh\n", 0o755)},
    build_commands=["echo hi > /etc/hi"],
)


def test_image_inputs_equal_for_equal_configs() -> None:
    a = MachineConfig(**BASE)
    b = MachineConfig(
        **{
            **BASE,
            "packages": ["curl", "nginx", "curl"],
            "files": {"/usr/local/bin/x": File(b"#!/bin/sh\n", 0o755), "/etc/motd": File("hello\n")},
        }
    )
    assert a.image_inputs() == b.image_inputs()
    assert a == MachineConfig(**BASE)
    assert a.image_inputs() == MachineConfig(**BASE).image_inputs()


@pytest.mark.parametrize(
    "change",
    [
        {"packages": ["nginx", "curl", "jq"]},
        {"packages": ["nginx"]},
        {"files": {**BASE["files"], "/etc/motd": "hello!\n"}},
        {"files": {**BASE["files"], "/usr/local/bin/x": File("#!/bin/sh\n", 0o700)}},
        {"files": {**BASE["files"], "/etc/new": ""}},
        {"services": ["nginx", "ssh"]},
        {"units": {"app": "[Service]\nExecStart=/bin/false\n"}},
        {"build_commands": ["echo ho > /etc/hi"]},
        {"suite": "trixie"},
    ],
    ids=[
        "add-package",
        "remove-package",
        "file-content",
        "file-mode",
        "new-file",
        "service",
        "unit",
        "build-command",
        "suite",
    ],
)
def test_image_inputs_change_with_image_fields(change: dict) -> None:
    assert MachineConfig(**BASE).image_inputs() != MachineConfig(**{**BASE, **change}).image_inputs()


@pytest.mark.parametrize(
    "change",
    [
        {"kernel_params": ["quiet", "foo=bar"]},
        {"virtualisation": {"memory_size": 4096, "cores": 8, "graphics": False}},
    ],
    ids=["kernel_params", "virtualisation"],
)
def test_image_inputs_ignore_boot_time_fields(change: dict) -> None:
    a = MachineConfig(**BASE)
    b = MachineConfig(**{**BASE, **change})
    assert a != b
    assert a.image_inputs() == b.image_inputs()


def test_image_inputs_is_json_able_and_hashes_file_content() -> None:
    import hashlib
    import json

    inputs = MachineConfig(**BASE).image_inputs()
    json.dumps(inputs)
    assert inputs["files"]["/etc/motd"] == {"sha256": hashlib.sha256(b"hello\n").hexdigest(), "mode": 0o644}
    assert "hello" not in json.dumps(inputs["files"])
    assert "kernel_params" not in inputs and "virtualisation" not in inputs


# -- immutability ---------------------------------------------------------------------


def test_config_is_immutable() -> None:
    cfg = MachineConfig(packages=["nginx"])
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.packages = ("curl",)  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.virtualisation.cores = 4  # type: ignore[misc]
    with pytest.raises(TypeError):
        cfg.files["/etc/x"] = File("x")  # type: ignore[index]
    with pytest.raises(TypeError):
        cfg.units["x.service"] = ""  # type: ignore[index]
    assert cfg.packages == ("nginx",)


def test_config_does_not_alias_caller_dicts() -> None:
    files = {"/etc/a": "a"}
    units = {"app": "[Service]\n"}
    cfg = MachineConfig(files=files, units=units)
    files["/etc/b"] = "b"
    units["other"] = ""
    assert list(cfg.files) == ["/etc/a"]
    assert list(cfg.units) == ["app.service"]


def test_frozen_config_is_hashable() -> None:
    assert hash(MachineConfig(suite="bookworm")) == hash(MachineConfig(suite="bookworm"))


def test_replace_validates_again() -> None:
    cfg = MachineConfig(packages=["nginx"], services=["nginx"])
    new = cfg.replace(packages=["curl", "nginx"])
    assert new.packages == ("curl", "nginx")
    assert new.services == cfg.services
    assert cfg.packages == ("nginx",)
    with pytest.raises(ConfigError) as info:
        cfg.replace(packages="curl")
    assert info.value.field == "packages"
    with pytest.raises(ConfigError) as info:
        cfg.replace(pacakges=["x"])
    assert info.value.field == "pacakges"
