"""The run settings under pytest: flags and ini keys registered from the declarations.

:class:`~vmtest.config.settings.Settings` declares each setting once; this
module turns the declarations into pytest options (``--vm-accel`` ...) and ini
keys (``vm_accel`` ...), and resolves them once per session (command line,
then environment, then ini file, then default). A bad value stops the session
with a :class:`pytest.UsageError` naming where it came from.
"""

from __future__ import annotations

import os
from typing import Literal

import pytest

from vmtest.config.declare import declared
from vmtest.config.settings import Settings, argument_options, is_yes_no
from vmtest.core.errors import ConfigError

SETTINGS_KEY = pytest.StashKey[Settings]()


def add_pytest_options(parser: pytest.Parser) -> None:
    """Register every setting's flag (in the ``vmtest`` group) and ini key."""
    group = parser.getgroup("vmtest", "virtual machine tests")
    for f, _ in declared(Settings):
        names = Settings.names(f.name)
        ini_type: Literal["bool", "string"] = "bool" if is_yes_no(f) else "string"
        group.addoption(names.flag, **argument_options(f.name))
        parser.addini(
            names.ini,
            f"like {names.flag} (environment: {names.env}; the command line wins, then the environment)",
            type=ini_type,
            default=None,
        )


def from_pytest_config(config: pytest.Config) -> Settings:
    """The settings of this pytest run (a bad value is a UsageError)."""
    cli = {f.name: config.getoption(Settings.names(f.name).flag) for f, _ in declared(Settings)}
    try:
        return Settings.resolve(cli, os.environ, config.getini)
    except ConfigError as exc:
        raise pytest.UsageError(f"vmtest: {exc}") from None


def settings(config: pytest.Config) -> Settings:
    """The settings of this session, resolved on first use and kept."""
    if SETTINGS_KEY not in config.stash:
        config.stash[SETTINGS_KEY] = from_pytest_config(config)
    return config.stash[SETTINGS_KEY]
