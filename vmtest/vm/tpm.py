"""One machine's software TPM: ``swtpm socket``, started before QEMU and reaped with it.

swtpm is spawned like QEMU and ``vde_switch`` (:func:`vmtest.core.proc.spawn`: its own session,
``PR_SET_PDEATHSIG``, so a killed pytest takes it along) with ``--terminate``: it also exits on
its own when QEMU closes the control connection (the guest powered off). Its state lives in the
machine's state directory (``tpm/``), so it survives ``reboot()`` and, with ``--vm-keep-state``,
the next run. ``tpm.provisioning`` runs once, on a new state directory, before the first start.
"""

from __future__ import annotations

import logging
import os
import shlex
import stat
import subprocess
import time
from pathlib import Path

from vmtest.config.firmware import TpmOptions
from vmtest.core.errors import LaunchError
from vmtest.core.log import log
from vmtest.core.proc import ProcessError, kill_group, run, spawn
from vmtest.vm.paths import MachinePaths

PROVISIONED = ".vmtest-provisioned"  # in the state directory: provisioning ran (or was not asked for)


def swtpm_argv(tpm: TpmOptions, paths: MachinePaths) -> list[str]:
    """swtpm's command line (pure)."""
    return [
        tpm.package,
        "socket",
        "--tpm2",
        "--tpmstate",
        f"dir={paths.tpm_state}",
        "--ctrl",
        f"type=unixio,path={paths.tpm_socket}",
        "--terminate",
        "--log",
        f"file={paths.tpm_state / 'swtpm.log'},level=1",
    ]


class Swtpm:
    """One machine's swtpm, owned from start() to stop()."""

    def __init__(self, name: str, tpm: TpmOptions, paths: MachinePaths, logger: logging.Logger) -> None:
        self.name = name
        self.tpm = tpm
        self.paths = paths
        self.logger = logger
        self.process: subprocess.Popen[bytes] | None = None

    def provision(self) -> None:
        """Run ``tpm.provisioning`` on a new state directory (once)."""
        state = self.paths.tpm_state
        state.mkdir(parents=True, exist_ok=True)
        marker = state / PROVISIONED
        if marker.exists():
            return
        if self.tpm.provisioning is not None:
            start = time.monotonic()
            try:
                run(
                    ["sh", "-c", self.tpm.provisioning],
                    what=f"{self.name}: virtualisation.tpm.provisioning",
                    logger=self.logger,
                    env={"TPM_STATE_DIR": str(state)},
                    timeout=120,
                    line_level=logging.INFO,
                )
            except ProcessError as exc:
                raise LaunchError(
                    self.name,
                    "provisioning the TPM (virtualisation.tpm.provisioning)",
                    str(exc),
                    time.monotonic() - start,
                ) from None
        marker.write_text("")

    def start(self, timeout: float = 10.0) -> None:
        self.provision()
        sock = self.paths.tpm_socket
        sock.unlink(missing_ok=True)
        out = self.paths.tpm_state / "swtpm.out"
        argv = swtpm_argv(self.tpm, self.paths)
        start = time.monotonic()
        try:
            self.process = spawn(argv, logger=self.logger, stdout=out)
        except OSError as exc:
            raise LaunchError(
                self.name,
                "starting the TPM (virtualisation.tpm)",
                f"cannot run {self.tpm.package!r}: {exc}; install swtpm (apt-get install swtpm) or set tpm.package",
            ) from None
        # A connection would count as QEMU's (--terminate ends swtpm when it closes): wait for the socket file.
        while not _is_socket(sock):
            if self.process.poll() is not None:
                said = out.read_text(errors="replace")[-2000:] + _tail(self.paths.tpm_state / "swtpm.log")
                raise LaunchError(
                    self.name,
                    "starting the TPM (virtualisation.tpm)",
                    f"swtpm exited with status {self.process.returncode}: {shlex.join(argv)}\n{said}",
                    time.monotonic() - start,
                )
            if time.monotonic() - start > timeout:
                self.stop()
                raise LaunchError(
                    self.name, "starting the TPM", f"no socket {sock} within {timeout:.0f}s", time.monotonic() - start
                )
            time.sleep(0.01)
        log(self.logger, f"{self.name}: TPM up (swtpm pid {self.process.pid})", level=logging.DEBUG)

    def stop(self) -> None:
        if self.process is not None:
            kill_group(self.process)
            self.process = None


def _is_socket(path: Path) -> bool:
    try:
        return stat.S_ISSOCK(os.stat(path).st_mode)
    except OSError:
        return False


def _tail(path: Path) -> str:
    try:
        return path.read_text(errors="replace")[-1000:]
    except OSError:
        return ""
