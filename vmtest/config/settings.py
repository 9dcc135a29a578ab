"""Run settings: how vmtest runs (not what a machine is), each declared exactly once.

Every setting is a field of :class:`Settings` declared with
:func:`~vmtest.config.declare.option`: its documentation, validator,
command-line flag, environment variable and pytest ini key. A value comes from
the first of these that is set: the command line, then the environment, then
the ini file (``pytest.ini``, ``[tool.pytest.ini_options]``, ``tox.ini``),
then the default. :meth:`Settings.resolve` does that for any source (it is
pure); :meth:`Settings.from_environment` is for code running outside pytest
(a ``Machine`` or ``ImageStore`` made in a script), :meth:`Settings.active` for
code that may run in either (inside a pytest session it is that session's
settings, command line and ini file included); the pytest glue lives in
:mod:`vmtest.plugin.settings`, the ``vmtest`` command's glue is
:func:`add_arguments` / :func:`from_arguments` below.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, TypedDict

from vmtest.config.declare import Declaration, declaration, declared, default_of, documented, option, validate_fields
from vmtest.config.validators import base_url, byte_size, choice, duration, host_path, optional, seconds, yes_no
from vmtest.core.errors import ConfigError

# The accelerators vmtest knows: the one declaration every flag, check and document uses.
ACCELERATORS = ("auto", "kvm", "tcg")
SNAPSHOT_MODES = ("on", "off")

# Where a value can come from, in order of precedence (then the default).
SOURCES = ("command line", "environment", "ini file")

Ini = Callable[[str], object]


def no_ini(key: str) -> None:
    """The ini file of a program that has none (the ``vmtest`` command, a script)."""
    return None


def default_cache_dir(env: Mapping[str, str]) -> Path:
    """``$XDG_CACHE_HOME/vmtest``, else ``~/.cache/vmtest``."""
    base = env.get("XDG_CACHE_HOME") or Path(env.get("HOME") or Path.home()) / ".cache"
    return Path(base).expanduser().absolute() / "vmtest"


class _Names(TypedDict):
    flag: str
    env: str
    ini: str


def conventional_names(setting: str) -> _Names:
    """The flag, environment variable and ini key of ``setting``, by the one convention they all follow:
    ``cache_dir`` is ``--vm-cache-dir``, ``VMTEST_CACHE_DIR`` and ``vm_cache_dir``."""
    return {"flag": f"--vm-{setting.replace('_', '-')}", "env": f"VMTEST_{setting.upper()}", "ini": f"vm_{setting}"}


class SettingNames(NamedTuple):
    """Where a setting can be given (every setting declares all three)."""

    flag: str  # command-line flag
    env: str  # environment variable
    ini: str  # pytest ini key


@documented
@dataclass(frozen=True)
class Settings:
    """How vmtest runs; one value per setting, already checked (see the module docstring for the sources)."""

    accel: str = option("auto", choice(ACCELERATORS), **conventional_names("accel"))
    """QEMU accelerator: auto (KVM if a tiny guest proves that it works here, else TCG), kvm (an error if KVM does not
    work) or tcg (software emulation)."""
    cache_dir: Path = option(
        None,
        host_path,
        **conventional_names("cache_dir"),
        env_default=default_cache_dir,
        default_text="$XDG_CACHE_HOME/vmtest, else ~/.cache/vmtest",
    )
    """Image cache directory (images, kernels, downloaded packages, the KVM verdict)."""
    cache_url: str | None = option(None, optional(base_url), **conventional_names("cache_url"), default_text="none")
    """A read-only remote cache: an HTTP(S) base URL serving entries as 'vmtest cache export -o DIR/' writes them
    (DIR/images/KEY.tar.zst, DIR/kernels/KEY.tar.zst, DIR/snapshots/KEY.tar.zst). An image or kernel missing here is
    fetched from it and verified before it is built locally, a booted snapshot before the machine boots cold (only one
    made by this host's QEMU version); a missing or corrupt remote entry is built (booted) locally."""
    cache_max_size: int = option(20 << 30, byte_size, **conventional_names("cache_max_size"), default_text="20G")
    """Bound on the cache's size (images, kernels, booted snapshots, bootable disks): at the end of a pytest session,
    entries this session did not use go, least recently used first (snapshots and bootable disks before images, kernels
    last), until the cache fits; a session that ends while another pytest session uses the cache leaves that to the
    last one. A size with a binary unit (20G, 512M); 0 or none: no bound. 'vmtest cache gc --max-size' does the same
    by hand."""
    output_dir: Path = option(
        Path("vmtest-output"), host_path, **conventional_names("output_dir"), default_text="./vmtest-output"
    )
    """Where failed tests leave console logs, screenshots and journals (a directory per test), and where --vm-keep-state
    keeps machine state (its state/ directory)."""
    keep_state: bool = option(False, yes_no, **conventional_names("keep_state"))
    """Keep each test's machine state (disk overlays) in state/ in the output directory (a directory per test, named by
    a hash of its id) and boot from it again in the next run; without it each test starts from a fresh state."""
    rebuild: bool = option(False, yes_no, **conventional_names("rebuild"))
    """Rebuild every image this session uses, once, even if cached."""
    snapshots: str = option("on", choice(SNAPSHOT_MODES), **conventional_names("snapshots"))
    """Start machines from booted snapshots: on (the first start of a configuration boots and saves the booted machine
    in the cache; later starts restore it in a fraction of a boot) or off (always boot)."""
    global_timeout: float = option(3600.0, seconds, **conventional_names("global_timeout"))
    """Kill the machines of a test still running after this many seconds: the hung call fails at once and the report
    says why."""

    record: bool = option(False, yes_no, **conventional_names("record"))
    """Record each machine's screen while a test runs (a QMP screendump every record_interval seconds, encoded by
    ffmpeg) into <output dir>/<test>/<machine>-screen.mp4, linked from the report (and from the pytest-html report).
    Needs ffmpeg."""
    record_interval: float = option(0.5, seconds, **conventional_names("record_interval"))
    """Seconds between two frames of --vm-record (an unchanged screen costs no file; the video plays at
    1/record_interval frames per second, in real time)."""
    interactive: bool = option(False, yes_no, **conventional_names("interactive"))
    """Instead of running the one selected test's body, boot its machines and open a Python REPL (ptpython when
    installed) with each node, vms and start_all bound; leaving it ends the test and releases the machines (what `vmtest
    shell PATH::TEST` runs)."""
    keep_on_failure: bool = option(False, yes_no, **conventional_names("keep_on_failure"))
    """Keep the running machines of a failed test up after it (and after pytest exits), for at most --vm-keep-for; the
    report prints for each a `vmtest attach` command (a root shell) and a `vmtest kill` command. `vmtest ps` lists kept
    machines."""
    keep_for: float = option(1800.0, duration, **conventional_names("keep_for"), default_text="30m")
    """How long machines kept by --vm-keep-on-failure live before they are killed (seconds, or with a unit: 90s, 30m,
    2h); enforced by each machine's supervisor process even if nobody runs `vmtest kill`."""
    debug_hook: bool = option(False, yes_no, **conventional_names("debug_hook"))
    """Pause a failing test at its failure with its machines running (prints how to attach a root shell to each) until
    Enter is pressed on the terminal, SIGUSR1 reaches pytest or the file it names is created."""

    def __post_init__(self) -> None:
        validate_fields(self)

    @classmethod
    def declaration(cls, name: str) -> Declaration:
        """The declaration of setting ``name``."""
        return declaration(next(f for f in dataclasses.fields(cls) if f.name == name))

    @classmethod
    def names(cls, name: str) -> SettingNames:
        """The flag, environment variable and ini key of setting ``name``."""
        decl = cls.declaration(name)
        if decl.flag is None or decl.env is None or decl.ini is None:
            raise TypeError(f"setting {name} must declare its flag, environment variable and ini key")
        return SettingNames(decl.flag, decl.env, decl.ini)

    @classmethod
    def check(cls, name: str, value: Any) -> Any:
        """``value`` checked and normalised as setting ``name`` (a ConfigError naming ``name`` if bad)."""
        return cls.declaration(name).validate(name, value)

    @classmethod
    def resolve(
        cls,
        cli: Mapping[str, object],
        env: Mapping[str, str],
        ini: Ini = no_ini,
        *,
        flags: Mapping[str, str] | None = None,
    ) -> Settings:
        """The settings from the command line (``cli``: setting name -> value, None when not given), the
        environment and the ini file (``ini(key)``, None or empty when not set), in that order, else the
        defaults. ``flags`` names the command line's own spelling of a setting (for error messages).

        A bad value is a :class:`ConfigError` naming where it came from and what is allowed.
        """
        values = {}
        for f, decl in declared(cls):
            found = _lookup(f.name, decl, cli, env, ini, flags or {})
            if found is None:
                values[f.name] = decl.env_default(env) if decl.env_default else default_of(f)
                continue
            source, key, raw = found
            try:
                values[f.name] = decl.validate(key, raw)
            except ConfigError as exc:
                raise ConfigError(
                    exc.field, exc.value, f"{exc.why} (the {f.name} setting, from the {source})", exc.fix
                ) from None
        return cls(**values)

    @classmethod
    def from_environment(cls) -> Settings:
        """The settings of a program without command-line flags or ini file: environment, else defaults."""
        return cls.resolve({}, os.environ, no_ini)

    @classmethod
    def active(cls) -> Settings:
        """The settings in force in this process: those of the running pytest session (its command line
        and ini file included; the plugin installs them with :func:`in_force`), else
        :meth:`from_environment`. A ``Machine`` or ``ImageStore`` a test builds itself takes its defaults
        from here, so ``pytest --vm-snapshots=off`` reaches it as ``VMTEST_SNAPSHOTS=off`` would."""
        return _IN_FORCE[-1] if _IN_FORCE else cls.from_environment()


# The settings of the pytest sessions running in this process, innermost last (a test may run pytest
# in-process, pytester's runpytest: its session's settings hold until it ends).
_IN_FORCE: list[Settings] = []


@contextlib.contextmanager
def in_force(settings: Settings) -> Iterator[None]:
    """Make ``settings`` what :meth:`Settings.active` returns until the block ends."""
    _IN_FORCE.append(settings)
    try:
        yield
    finally:
        _IN_FORCE.remove(settings)


def _given(value: object) -> bool:
    """Unset: None (a flag not given, an ini key not set), False (a store_true flag not given, a false
    ini bool) or an empty string (``VMTEST_ACCEL=``)."""
    return value is not None and value is not False and value != ""


def _lookup(
    name: str, decl: Declaration, cli: Mapping[str, object], env: Mapping[str, str], ini: Ini, flags: Mapping[str, str]
) -> tuple[str, str, object] | None:
    """(source, the key it was set under, raw value) of the first source that sets ``name``, or None."""
    candidates: tuple[tuple[str, str | None, Callable[[], object]], ...] = (
        (SOURCES[0], flags.get(name, decl.flag or name), lambda: cli.get(name)),
        (SOURCES[1], decl.env, lambda: env.get(decl.env) if decl.env else None),
        (SOURCES[2], decl.ini, lambda: ini(decl.ini) if decl.ini else None),
    )
    for source, key, read in candidates:
        value = read()
        if _given(value):
            return source, str(key), value
    return None


# -- flags: shared by the pytest plugin and the ``vmtest`` command ----------------------------------

_METAVARS = {"Path": "DIR", "float": "SECONDS", "str | None": "URL"}


def is_yes_no(f: dataclasses.Field[Any]) -> bool:
    return declaration(f).validate is yes_no


def help_text(name: str, ini: bool = True) -> str:
    """The ``--help`` text of a setting: its doc, where else it can be set, and its default."""
    f = next(f for f in dataclasses.fields(Settings) if f.name == name)
    decl = declaration(f)
    default = decl.default_text or str(default_of(f))
    where = f"environment: {decl.env}=1" if is_yes_no(f) else f"environment: {decl.env}"
    if ini:
        where += f", ini: {decl.ini}"
    return f"{decl.doc.rstrip('.')} ({where}; default: {default})".replace("%", "%%")


def argument_options(name: str, ini: bool = True) -> dict[str, Any]:
    """``add_argument`` keywords of a setting's flag: not given means None, so the environment, the ini
    file and the default still apply; choices come from the declaration."""
    f = next(f for f in dataclasses.fields(Settings) if f.name == name)
    kwargs: dict[str, Any] = {"default": None, "help": help_text(name, ini)}
    if is_yes_no(f):
        kwargs["action"] = "store_true"
    elif declaration(f).choices:
        kwargs["choices"] = declaration(f).choices
    else:
        kwargs["metavar"] = _METAVARS.get(str(f.type), "VALUE")
    return kwargs


def add_arguments(
    parser: argparse.ArgumentParser, names: Iterable[str], flags: Mapping[str, str] | None = None
) -> None:
    """Give ``parser`` a flag for each setting in ``names`` (spelled as in ``flags``, else as declared)."""
    for name in names:
        flag = (flags or {}).get(name) or Settings.names(name).flag
        parser.add_argument(flag, dest=name, **argument_options(name, ini=False))


def from_arguments(
    args: argparse.Namespace, flags: Mapping[str, str] | None = None, env: Mapping[str, str] | None = None
) -> Settings:
    """The settings of a command parsed with :func:`add_arguments`: its flags, then the environment."""
    cli = {f.name: getattr(args, f.name) for f in dataclasses.fields(Settings) if hasattr(args, f.name)}
    return Settings.resolve(cli, os.environ if env is None else env, no_ini, flags=flags)
