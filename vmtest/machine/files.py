"""Copying files and trees between host and guest, through the 9p exchange directory or the backdoor.

The exchange directory (``xchg``, mounted at /tmp/xchg, see
:mod:`vmtest.core.contract`) is the fast path; a guest without it, or
``via_shell=True``, sends the data as base64 through the backdoor.
"""

from __future__ import annotations

import base64
import io
import os
import shlex
import shutil
import tarfile
import tempfile
import time
from pathlib import Path

from vmtest.core.contract import XCHG_GUEST_PATH, ensure_xchg_mounted
from vmtest.machine.commands import Commands


class Files:
    def __init__(self, commands: Commands) -> None:
        self.commands = commands
        self.vm = commands.vm

    @property
    def shared_dir(self) -> Path:
        """Host side of the exchange directory."""
        return self.vm.paths.xchg

    def _xchg_ready(self) -> bool:
        return self.commands.execute(ensure_xchg_mounted())[0] == 0

    def copy_from_host(self, source: str | os.PathLike[str], target: str, via_shell: bool = False) -> None:
        with self.vm.nested(f"copying {source} from the host to {target}"):
            if via_shell or not self._xchg_ready():
                self.copy_from_host_via_shell(source, target)
            else:
                self.copy_from_host_via_share(source, target, self.shared_dir)

    def copy_from_vm(self, source: str, dest: Path, via_shell: bool = False) -> Path:
        with self.vm.nested(f"copying {source} from the guest to {dest}"):
            if via_shell or not self._xchg_ready():
                return self.copy_from_vm_via_shell(source, dest)
            return self.copy_from_vm_via_share(source, dest, self.shared_dir)

    # -- copying through the backdoor (no shared directory needed) ------------

    def copy_from_host_via_shell(self, source: str | os.PathLike[str], target: str) -> None:
        """Copy a host file or directory tree to ``target`` in the guest, modes kept.

        The data travels as base64 through the backdoor, in 1 MiB commands.
        """
        src = Path(source)
        if not src.exists():
            raise FileNotFoundError(f"copy_from_host: {src} does not exist on the host")
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz") as tar:
            tar.add(src, arcname="." if src.is_dir() else "file")
        data = base64.b64encode(buf.getvalue()).decode()
        archive = f"/tmp/.vmtest-copy-{time.monotonic_ns()}"
        chunk = 1 << 20
        for i in range(0, max(len(data), 1), chunk):
            self.commands.must(f"printf %s {data[i : i + chunk]} >> {archive}", "copy_from_host (sending)")
        t = shlex.quote(target)
        if src.is_dir():
            unpack = f"mkdir -p {t} && base64 -d {archive} | tar -xzpf - -C {t}"
        else:
            unpack = (
                f'mkdir -p "$(dirname {t})" && tmp=$(mktemp -d) && '
                f'base64 -d {archive} | tar -xzpf - -C "$tmp" && mv "$tmp/file" {t} && rmdir "$tmp"'
            )
        self.commands.must(
            f"rc=0; {{ {unpack}; }} || rc=$?; rm -f {archive}; exit $rc", f"copy_from_host {src} -> {target}"
        )

    def copy_from_vm_via_shell(self, source: str, target_dir: str | os.PathLike[str]) -> Path:
        """Copy a guest file or directory tree into the host directory ``target_dir``, modes kept."""
        out = self.commands.must(
            f"cd {shlex.quote(str(Path(source).parent))} && tar -czpf - {shlex.quote(Path(source).name)} | base64 -w 0",
            f"copy_from_vm {source}",
        )
        dest = Path(target_dir)
        dest.mkdir(parents=True, exist_ok=True)
        with tarfile.open(fileobj=io.BytesIO(base64.b64decode(out)), mode="r:gz") as tar:
            tar.extractall(dest, filter="tar")
        return dest / Path(source).name

    # -- copying through the 9p exchange directory -----------------------------

    def copy_from_host_via_share(self, source: str | os.PathLike[str], target: str, host_dir: Path) -> None:
        """Copy through ``host_dir`` (the host side of /tmp/xchg)."""
        src = Path(source)
        if not src.exists():
            raise FileNotFoundError(f"copy_from_host: {src} does not exist on the host")
        stage = Path(tempfile.mkdtemp(prefix="in-", dir=host_dir))
        guest_stage = f"{XCHG_GUEST_PATH}/{stage.name}/data"
        t = shlex.quote(target)
        try:
            if src.is_dir():
                shutil.copytree(src, stage / "data", symlinks=True)
                self.commands.must(f"mkdir -p {t} && cp -a {guest_stage}/. {t}/", f"copy_from_host {src} -> {target}")
            else:
                shutil.copy2(src, stage / "data")
                self.commands.must(
                    f'mkdir -p "$(dirname {t})" && cp -a {guest_stage} {t}', f"copy_from_host {src} -> {target}"
                )
        finally:
            shutil.rmtree(stage, ignore_errors=True)

    def copy_from_vm_via_share(self, source: str, dest: Path, host_dir: Path) -> Path:
        """Copy the guest's ``source`` into ``dest`` through ``host_dir``; returns the host path."""
        stage = Path(tempfile.mkdtemp(prefix="out-", dir=host_dir))
        try:
            self.commands.must(f"cp -a {shlex.quote(source)} {XCHG_GUEST_PATH}/{stage.name}/", f"copy_from_vm {source}")
            dest.mkdir(parents=True, exist_ok=True)
            final = dest / Path(source).name
            if final.is_dir():
                shutil.rmtree(final)
            shutil.move(str(stage / Path(source).name), final)
            return final
        finally:
            shutil.rmtree(stage, ignore_errors=True)
