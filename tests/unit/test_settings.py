"""Run settings: one declaration each; command line, then environment, then ini file, then default."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import pytest

from vmtest.cli.main import parser as cli_parser
from vmtest.config import settings as settings_module
from vmtest.config import validators
from vmtest.config.declare import declared
from vmtest.config.settings import ACCELERATORS, Settings, add_arguments, from_arguments, in_force, no_ini
from vmtest.core.errors import ConfigError
from vmtest.image import ImageStore
from vmtest.plugin.settings import add_pytest_options

ENV = {"HOME": "/home/u", "XDG_CACHE_HOME": "/xdg"}


def resolve(cli=None, env=None, ini=None) -> Settings:
    values = ini or {}
    return Settings.resolve(cli or {}, {**ENV, **(env or {})}, lambda key: values.get(key))


def error(cli=None, env=None, ini=None) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        resolve(cli, env, ini)
    return info.value


class Recorder:
    """Stands in for pytest's parser: records what the plugin registers."""

    def __init__(self) -> None:
        self.options: dict[str, dict] = {}
        self.ini: dict[str, str] = {}

    def getgroup(self, name: str, description: str = "") -> Recorder:
        return self

    def addoption(self, flag: str, **kwargs: object) -> None:
        self.options[flag] = kwargs

    def addini(self, name: str, help: str, type: str, default: object) -> None:
        self.ini[name] = type


# -- the declarations -------------------------------------------------------------------------------


def test_every_setting_declares_flag_env_ini_doc_and_validator() -> None:
    names = [f.name for f in dataclasses.fields(Settings)]
    assert names == [
        "accel",
        "cache_dir",
        "cache_url",
        "cache_max_size",
        "output_dir",
        "keep_state",
        "rebuild",
        "snapshots",
        "global_timeout",
        "record",
        "record_interval",
        "interactive",
        "keep_on_failure",
        "keep_for",
        "debug_hook",
    ]
    for f, decl in declared(Settings):
        assert decl.flag == "--vm-" + f.name.replace("_", "-")
        assert decl.env == "VMTEST_" + f.name.upper()
        assert decl.ini == "vm_" + f.name
        assert decl.doc.strip() and callable(decl.validate)


def test_the_accelerators_are_declared_once() -> None:
    assert Settings.declaration("accel").choices is ACCELERATORS
    pytest_parser = Recorder()
    add_pytest_options(pytest_parser)  # type: ignore[arg-type]
    assert pytest_parser.options["--vm-accel"]["choices"] is ACCELERATORS
    assert pytest_parser.ini["vm_accel"] == "string" and pytest_parser.ini["vm_keep_state"] == "bool"
    run_vm = cli_parser()._subparsers._group_actions[0].choices["run-vm"]  # type: ignore[union-attr]
    accel = next(a for a in run_vm._actions if "--accel" in a.option_strings)
    assert accel.choices is ACCELERATORS and accel.default is None
    for value in ACCELERATORS:
        assert Settings.check("accel", value) == value
    with pytest.raises(ConfigError, match="'auto', 'kvm', 'tcg'"):
        Settings.check("accel", "hvf")


# -- defaults ----------------------------------------------------------------------------------------


def test_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    assert resolve() == Settings(
        accel="auto",
        cache_dir=Path("/xdg/vmtest"),
        output_dir=tmp_path / "vmtest-output",
        keep_state=False,
        rebuild=False,
        global_timeout=3600.0,
    )
    assert resolve().output_dir.is_absolute()


def test_default_cache_dir_without_xdg_is_under_home() -> None:
    assert Settings.resolve({}, {"HOME": "/home/u"}, no_ini).cache_dir == Path("/home/u/.cache/vmtest")
    assert Settings.resolve({}, {"HOME": "/home/u", "XDG_CACHE_HOME": ""}, no_ini).cache_dir == Path(
        "/home/u/.cache/vmtest"
    )


def test_from_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in (
        "VMTEST_ACCEL",
        "VMTEST_CACHE_DIR",
        "VMTEST_OUTPUT_DIR",
        "VMTEST_KEEP_STATE",
        "VMTEST_REBUILD",
        "VMTEST_GLOBAL_TIMEOUT",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert Settings.from_environment().cache_dir == tmp_path / ".cache" / "vmtest"
    monkeypatch.setenv("XDG_CACHE_HOME", "/from/xdg")
    assert Settings.from_environment().cache_dir == Path("/from/xdg/vmtest")
    monkeypatch.setenv("VMTEST_CACHE_DIR", "~/vc")
    monkeypatch.setenv("VMTEST_ACCEL", "tcg")
    monkeypatch.setenv("VMTEST_KEEP_STATE", "yes")
    got = Settings.from_environment()
    assert (got.cache_dir, got.accel, got.keep_state) == (tmp_path / "vc", "tcg", True)
    assert Settings() == Settings.resolve({}, {"HOME": str(tmp_path), "XDG_CACHE_HOME": "/from/xdg"}, no_ini)


# -- precedence --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, cli, env, ini, expected",
    [
        ("accel", "kvm", "tcg", "auto", "kvm"),
        ("cache_dir", "/cli", "/env", "/ini", Path("/cli")),
        ("output_dir", "/cli", "/env", "/ini", Path("/cli")),
        ("keep_state", True, "0", False, True),
        ("rebuild", True, "no", "false", True),
        ("global_timeout", "30", "60", "120", 30.0),
        ("cache_max_size", "1G", "2G", "3G", 1 << 30),
    ],
)
def test_command_line_beats_environment_beats_ini(name, cli, env, ini, expected) -> None:
    decl = Settings.declaration(name)
    assert getattr(resolve({name: cli}, {decl.env: env}, {decl.ini: ini}), name) == expected
    without_cli = getattr(resolve({name: None}, {decl.env: env}, {decl.ini: ini}), name)
    assert without_cli == Settings.check(name, env)
    only_ini = getattr(resolve({}, {}, {decl.ini: ini}), name)
    assert only_ini == (Settings.check(name, ini) if ini is not False else getattr(resolve(), name))


def test_unset_sources_fall_through() -> None:
    # an empty environment variable, an empty ini value and a flag not given (None/False) are not set
    got = resolve(
        {"accel": None, "keep_state": False},
        {"VMTEST_ACCEL": "", "VMTEST_KEEP_STATE": ""},
        {"vm_accel": "tcg", "vm_keep_state": True},
    )
    assert (got.accel, got.keep_state) == ("tcg", True)
    assert resolve({}, {}, {"vm_accel": ""}).accel == "auto"


def test_environment_yes_no_beats_a_true_ini() -> None:
    assert resolve({}, {"VMTEST_KEEP_STATE": "0"}, {"vm_keep_state": True}).keep_state is False


@pytest.mark.parametrize("text", ["1", "true", "yes", "on", "TRUE", " Yes ", "On"])
def test_true_words(text: str) -> None:
    assert resolve(env={"VMTEST_KEEP_STATE": text}).keep_state is True
    assert resolve(ini={"vm_rebuild": text}).rebuild is True


@pytest.mark.parametrize("text", ["0", "false", "no", "off", "OFF"])
def test_false_words(text: str) -> None:
    assert resolve(env={"VMTEST_KEEP_STATE": text}, ini={"vm_keep_state": True}).keep_state is False


def test_relative_and_home_paths_are_made_absolute(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    got = resolve({"cache_dir": "~/c"}, {"VMTEST_OUTPUT_DIR": "out"})
    assert (got.cache_dir, got.output_dir) == (tmp_path / "home" / "c", tmp_path / "out")
    assert Settings.check("cache_dir", Path("/explicit/path")) == Path("/explicit/path")
    assert Settings.check("cache_dir", "rel") == tmp_path / "rel"


@pytest.fixture
def outside_pytest(monkeypatch: pytest.MonkeyPatch) -> None:
    """As in a script: no pytest session's settings in force (this test runs in one)."""
    monkeypatch.setattr(settings_module, "_IN_FORCE", [])


@pytest.mark.usefixtures("outside_pytest")
def test_image_store_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("VMTEST_CACHE_DIR", "/from/env")
    assert ImageStore("rel").cache.root == tmp_path / "rel"
    assert ImageStore().cache.root == Path("/from/env")
    monkeypatch.setenv("VMTEST_CACHE_DIR", "")  # empty means unset
    monkeypatch.setenv("XDG_CACHE_HOME", "/from/xdg")
    assert ImageStore(None).cache.root == Path("/from/xdg/vmtest")


# -- bad values name their source ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "cli, env, ini, key, source",
    [
        ({"accel": "foo"}, {}, {}, "--vm-accel", "command line"),
        ({}, {"VMTEST_ACCEL": "foo"}, {}, "VMTEST_ACCEL", "environment"),
        ({}, {}, {"vm_accel": "foo"}, "vm_accel", "ini file"),
    ],
)
def test_bad_accelerator_names_its_source_and_the_choices(cli, env, ini, key, source) -> None:
    err = error(cli, env, ini)
    assert err.field == key and err.value == "foo"
    assert "must be one of 'auto', 'kvm', 'tcg'" in err.why
    assert f"the accel setting, from the {source}" in err.why
    assert str(err).startswith(f"{key}='foo': ")


def test_bad_accelerator_close_to_a_choice_gets_a_hint() -> None:
    assert error(env={"VMTEST_ACCEL": "kv"}).fix == "did you mean 'kvm'?"


@pytest.mark.parametrize("value", ["abc", "", "0", "-5", "inf", "nan"])
def test_bad_global_timeout(value: str) -> None:
    if value == "":
        assert resolve(env={"VMTEST_GLOBAL_TIMEOUT": value}).global_timeout == 3600.0  # empty: not set
        return
    err = error(ini={"vm_global_timeout": value})
    assert err.field == "vm_global_timeout" and "seconds" in err.why and "ini file" in err.why


def test_bad_yes_no_names_the_words() -> None:
    err = error(env={"VMTEST_REBUILD": "maybe"})
    assert err.field == "VMTEST_REBUILD" and "environment" in err.why
    for word in validators.TRUE_WORDS + validators.FALSE_WORDS:
        assert word in err.fix


def test_direct_construction_is_validated() -> None:
    with pytest.raises(ConfigError) as info:
        Settings(accel="hvf")
    assert info.value.field == "accel"
    with pytest.raises(dataclasses.FrozenInstanceError):
        Settings().accel = "tcg"  # type: ignore[misc]


# -- argparse glue (the vmtest command) -------------------------------------------------------------------


def test_arguments_with_own_spelling() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser, ["cache_dir", "accel", "keep_state"], {"cache_dir": "--cache-dir"})
    args = parser.parse_args(["--cache-dir", "/c", "--vm-keep-state"])
    got = from_arguments(args, {"cache_dir": "--cache-dir"}, env={**ENV, "VMTEST_ACCEL": "tcg"})
    assert (got.cache_dir, got.accel, got.keep_state) == (Path("/c"), "tcg", True)
    assert from_arguments(parser.parse_args([]), env=ENV).cache_dir == Path("/xdg/vmtest")
    with pytest.raises(SystemExit):
        parser.parse_args(["--vm-accel", "hvf"])


def test_vmtest_command_reads_its_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VMTEST_ACCEL", "tcg")
    args = cli_parser().parse_args(["--cache-dir", "/c", "run-vm", "--accel", "kvm", "x.py::m"])
    got = from_arguments(args, {"cache_dir": "--cache-dir", "accel": "--accel"})
    assert (got.cache_dir, got.accel) == (Path("/c"), "kvm")
    args = cli_parser().parse_args(["cache", "ls"])
    assert from_arguments(args).accel == "tcg"


# -- consumers ----------------------------------------------------------------------------------------


@pytest.mark.usefixtures("outside_pytest")
def test_accel_request_is_checked_by_the_declaration(monkeypatch: pytest.MonkeyPatch) -> None:
    from vmtest.vm import accel

    assert accel.requested("tcg") == "tcg"
    with pytest.raises(ConfigError) as info:
        accel.requested("foo")
    assert info.value.field == "accel" and "'auto', 'kvm', 'tcg'" in info.value.why
    monkeypatch.setenv("VMTEST_ACCEL", "kvm")
    assert accel.requested(None) == "kvm"  # a Machine made outside pytest: the environment's setting
    monkeypatch.delenv("VMTEST_ACCEL")
    assert accel.requested(None) == "auto"


def test_doctor_reports_a_bad_environment_setting_and_goes_on() -> None:
    from vmtest.cli.doctor import settings_checks

    got, checks = settings_checks({"cache_dir": "/c"}, {**ENV, "VMTEST_ACCEL": "hvf", "VMTEST_REBUILD": "maybe"})
    assert (got.cache_dir, got.accel, got.rebuild) == (Path("/c"), "auto", False)
    assert [c.name for c in checks] == ["$VMTEST_ACCEL", "$VMTEST_REBUILD"] and not any(c.ok for c in checks)
    assert "unset VMTEST_ACCEL" in checks[0].fix


def test_doctor_reports_optional_pieces_without_failing() -> None:
    from vmtest.cli.doctor import Check, report

    text, ok = report(
        [
            Check("qemu-img", True, "/usr/bin/qemu-img"),
            Check("ffmpeg", False, "not found (encodes the screen videos of --vm-record)", "ffmpeg", optional=True),
        ]
    )
    assert ok, text
    assert (
        "[absent ] ffmpeg: not found (encodes the screen videos of --vm-record)  -> fix: apt-get install -y ffmpeg"
        in (text)
    )
    assert "everything vmtest needs is here" in text and "optional (absent):\n  apt-get install -y ffmpeg" in text
    text, ok = report([Check("tesseract", False, "not found", "tesseract-ocr"), *[]])
    assert not ok and "apt-get install -y tesseract-ocr" in text


def test_keep_for_takes_seconds_or_a_unit() -> None:
    assert Settings.check("keep_for", "30m") == 1800.0
    assert Settings.check("keep_for", "90s") == 90.0
    assert Settings.check("keep_for", "2h") == 7200.0
    assert Settings.check("keep_for", 45) == 45.0
    with pytest.raises(ConfigError, match="keep_for"):
        Settings.check("keep_for", "soon")


@pytest.mark.usefixtures("outside_pytest")
def test_active_is_the_innermost_session_in_force_else_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VMTEST_SNAPSHOTS", "on")
    monkeypatch.setenv("VMTEST_ACCEL", "kvm")
    assert Settings.active() == Settings.from_environment()
    outer = Settings.resolve({"snapshots": "off"}, {}, no_ini)
    inner = Settings.resolve({"accel": "tcg"}, {}, no_ini)
    with in_force(outer):
        assert Settings.active().snapshots == "off"
        with in_force(inner):
            assert (Settings.active().snapshots, Settings.active().accel) == ("on", "tcg")
        assert Settings.active() is outer
        with pytest.raises(RuntimeError), in_force(inner):
            raise RuntimeError("a session that fails still hands back")
        assert Settings.active() is outer
    assert Settings.active().accel == "kvm"
