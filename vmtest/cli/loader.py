"""Find a named ``MachineConfig`` in a Python file (``PATH::NAME``)."""

from __future__ import annotations

import runpy
from pathlib import Path

from vmtest.config.machine import MachineConfig
from vmtest.core.errors import ConfigError


def load_config(spec: str) -> tuple[str, MachineConfig]:
    """``"examples/test_x.py::server"`` -> ("server", the MachineConfig bound to ``server``)."""
    if "::" not in spec:
        raise ConfigError("target", spec, "expected PATH::NAME", "e.g. examples/test_smoke.py::machine")
    path_text, name = spec.rsplit("::", 1)
    path = Path(path_text)
    if not path.is_file():
        raise ConfigError("target", spec, f"no such file: {path}")
    try:
        namespace = runpy.run_path(str(path), run_name="vmtest_config_loader")
    except Exception as exc:  # the user's file failed to import: say so, with its error
        raise ConfigError("target", spec, f"importing {path} failed: {type(exc).__name__}: {exc}") from exc
    configs = sorted(k for k, v in namespace.items() if isinstance(v, MachineConfig))
    if name not in namespace:
        raise ConfigError(
            "target",
            spec,
            f"{path} defines no {name!r}",
            "MachineConfigs it defines: " + (", ".join(configs) or "none"),
        )
    value = namespace[name]
    if not isinstance(value, MachineConfig):
        raise ConfigError(
            "target",
            spec,
            f"{name!r} is a {type(value).__name__}, not a MachineConfig",
            "MachineConfigs it defines: " + (", ".join(configs) or "none"),
        )
    return name, value
