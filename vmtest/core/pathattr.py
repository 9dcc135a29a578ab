"""A path attribute named once: ``disk = FileIn("path", "disk.qcow2")`` reads as ``self.path / "disk.qcow2"``."""

from __future__ import annotations

from pathlib import Path
from typing import Any


class FileIn:
    """A read-only attribute: the file ``name`` in the directory the object's attribute ``folder`` holds."""

    def __init__(self, folder: str, name: str) -> None:
        self.folder = folder
        self.name = name

    def __get__(self, obj: Any, owner: type | None = None) -> Path:
        return Path(getattr(obj, self.folder)) / self.name
