"""Machine configurations: what a test declares about each VM.

``MachineConfig`` is immutable and validated on construction; every problem
is a :class:`~vmtest.errors.ConfigError` naming the field, the value, why it
is wrong and how to fix it. The image-relevant fields feed the image store's
content key (:meth:`MachineConfig.image_inputs`); ``virtualisation`` holds the
``qemu-vm.nix``-style options (see :mod:`vmtest.options`).
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from types import MappingProxyType
from typing import Any

from vmtest.core.errors import ConfigError
from vmtest.config.virtualisation import Virtualisation

_PACKAGE_RE = re.compile(r"^[a-z0-9][a-z0-9+.\-]+(:[a-z0-9]+)?([=/][A-Za-z0-9.+~:\-]+)?$")
_SUITE_RE = re.compile(r"^[a-z][a-z0-9\-]*$")
_UNIT_RE = re.compile(
    r"^[A-Za-z0-9:_.\\@\-]+\.(service|socket|target|timer|path|mount|automount|swap|slice|scope|device)$"
)


def host_suite() -> str:
    """The Debian release of the host (``VERSION_CODENAME``), or bookworm."""
    try:
        text = Path("/etc/os-release").read_text()
    except OSError:
        return "bookworm"
    ids = dict(
        line.split("=", 1) for line in text.splitlines() if "=" in line
    )
    if ids.get("ID", "").strip('"') == "debian" and ids.get("VERSION_CODENAME"):
        return ids["VERSION_CODENAME"].strip('"')
    return "bookworm"


@dataclass(frozen=True)
class File:
    """A file to place in the guest image: its content and permission bits."""

    content: str | bytes
    mode: int = 0o644

    def data(self) -> bytes:
        return self.content.encode() if isinstance(self.content, str) else self.content


def _unit_name(fieldname: str, name: object) -> str:
    if not isinstance(name, str) or not name:
        raise ConfigError(fieldname, name, "unit names must be non-empty strings", 'e.g. "nginx.service"')
    full = name if "." in name else name + ".service"
    if not _UNIT_RE.match(full):
        raise ConfigError(
            fieldname, name, "not a valid systemd unit name",
            "use a name like 'foo.service', 'foo.socket' or 'foo.timer'",
        )
    return full


def _str_tuple(fieldname: str, value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        raise ConfigError(fieldname, value, "expected a list of strings, got a single string", f"write {fieldname}=[{value!r}]")
    if not isinstance(value, (list, tuple)):
        raise ConfigError(fieldname, value, f"expected a list of strings, got {type(value).__name__}")
    for item in value:
        if not isinstance(item, str):
            raise ConfigError(fieldname, value, f"every entry must be a string, {item!r} is a {type(item).__name__}")
    return tuple(value)


def _mapping(fieldname: str, value: object) -> Mapping[Any, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(fieldname, value, f"expected a dict, got {type(value).__name__}")
    return value


def _guest_path(fieldname: str, path: object) -> str:
    if not isinstance(path, str):
        raise ConfigError(fieldname, path, "guest paths must be strings")
    p = PurePosixPath(path)
    if not p.is_absolute():
        raise ConfigError(fieldname, path, "guest paths must be absolute", f"write '/{path[2:] if path.startswith('./') else path}'")
    if ".." in p.parts or str(p) == "/":
        raise ConfigError(fieldname, path, "a guest path must name a file and must not contain '..'")
    return str(p)


@dataclass(frozen=True, init=False)
class MachineConfig:
    """The declaration of one virtual machine.

    Fields (all optional):

    - ``suite``: Debian release of the guest (default: the host's, else bookworm).
    - ``packages``: Debian packages to install.
    - ``services``: systemd units to start at boot (``"nginx"`` means ``nginx.service``): enabled, or
      added to multi-user.target when they have no [Install] section.
    - ``units``: unit name -> unit file text, installed in /etc/systemd/system and enabled per its
      [Install] section (without one it runs only when started, or when listed in ``services``).
    - ``files``: guest path -> ``str``/``bytes`` content or :class:`File` (content + mode).
    - ``build_commands``: shell commands run inside the image (chroot) at build time.
    - ``kernel_params``: extra kernel command-line parameters (boot time, not in the image).
    - ``virtualisation``: a :class:`~vmtest.options.Virtualisation` or a dict of its options.
    """

    suite: str = field(default_factory=host_suite)
    packages: tuple[str, ...] = ()
    services: tuple[str, ...] = ()
    units: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    files: Mapping[str, File] = field(default_factory=lambda: MappingProxyType({}))
    build_commands: tuple[str, ...] = ()
    kernel_params: tuple[str, ...] = ()
    virtualisation: Virtualisation = field(default_factory=Virtualisation)

    def __init__(self, **kwargs: Any) -> None:
        names = [f.name for f in dataclasses.fields(self)]
        for key in kwargs:
            if key not in names:
                close = difflib.get_close_matches(key, names, n=1)
                hint = f"did you mean {close[0]!r}?" if close else "known fields: " + ", ".join(names)
                raise ConfigError(key, kwargs[key], "unknown MachineConfig field", hint)
        for f in dataclasses.fields(self):
            if f.name in kwargs:
                value = kwargs[f.name]
            else:
                assert f.default_factory is not dataclasses.MISSING or f.default is not dataclasses.MISSING
                value = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
            object.__setattr__(self, f.name, value)
        self._validate()

    def __hash__(self) -> int:
        return hash((
            self.suite, self.packages, self.services, tuple(self.units.items()),
            tuple(self.files.items()), self.build_commands, self.kernel_params, self.virtualisation,
        ))

    def _set(self, name: str, value: object) -> None:
        object.__setattr__(self, name, value)

    def _validate(self) -> None:
        if not isinstance(self.suite, str) or not _SUITE_RE.match(self.suite):
            raise ConfigError("suite", self.suite, "not a Debian suite name", "use e.g. 'bookworm' or 'trixie'")
        packages = _str_tuple("packages", self.packages)
        for pkg in packages:
            if not _PACKAGE_RE.match(pkg):
                raise ConfigError(
                    "packages", pkg, "not a valid Debian package name",
                    "names are lower case letters, digits and + - . (optionally =version or /suite)",
                )
        self._set("packages", tuple(sorted(set(packages))))
        self._set("services", tuple(_unit_name("services", s) for s in _str_tuple("services", self.services)))
        units = {}
        for name, text in _mapping("units", self.units).items():
            full = _unit_name("units", name)
            if not isinstance(text, str):
                raise ConfigError(f"units[{name!r}]", text, "unit file text must be a string")
            units[full] = text
        self._set("units", MappingProxyType(units))
        files = {}
        for path, content in _mapping("files", self.files).items():
            gpath = _guest_path("files", path)
            if isinstance(content, (str, bytes)):
                content = File(content)
            if not isinstance(content, File):
                raise ConfigError(
                    f"files[{path!r}]", content, "file content must be str, bytes or vmtest.File",
                    "e.g. File('text', mode=0o755)",
                )
            if not isinstance(content.content, (str, bytes)):
                raise ConfigError(f"files[{path!r}].content", content.content, "must be str or bytes")
            if not isinstance(content.mode, int) or not 0 <= content.mode <= 0o7777:
                raise ConfigError(f"files[{path!r}].mode", content.mode, "must be an int permission like 0o644")
            files[gpath] = content
        self._set("files", MappingProxyType(files))
        self._set("build_commands", _str_tuple("build_commands", self.build_commands))
        params = self.kernel_params
        if isinstance(params, str):
            params = tuple(params.split())
        self._set("kernel_params", _str_tuple("kernel_params", params))
        virt = self.virtualisation
        if isinstance(virt, Mapping):
            virt = Virtualisation.from_dict(dict(virt))
        if not isinstance(virt, Virtualisation):
            raise ConfigError("virtualisation", virt, "expected a dict of options or vmtest.Virtualisation")
        self._set("virtualisation", virt)

    def image_inputs(self) -> dict[str, Any]:
        """Everything that goes into the guest image, in a canonical JSON-able form."""
        import hashlib

        return {
            "suite": self.suite,
            "packages": sorted(set(self.packages) | set(self.virtualisation.image_packages())),
            "services": list(self.services),
            "units": dict(sorted(self.units.items())),
            "files": {
                path: {"sha256": hashlib.sha256(f.data()).hexdigest(), "mode": f.mode}
                for path, f in sorted(self.files.items())
            },
            "build_commands": list(self.build_commands),
        }

    def replace(self, **changes: Any) -> MachineConfig:
        """A copy with some fields changed (validated again)."""
        current = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        current.update(changes)
        return MachineConfig(**current)
