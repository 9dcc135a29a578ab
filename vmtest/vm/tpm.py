"""One machine's software TPM: ``swtpm socket``, started before QEMU and reaped with it.

swtpm is spawned like QEMU and ``vde_switch`` (:func:`vmtest.core.proc.spawn`: its own session,
``PR_SET_PDEATHSIG``, so a killed pytest takes it along) with ``--terminate``: it also exits on
its own when QEMU closes the control connection (the guest powered off). Its state lives in the
machine's state directory (``tpm/``), so it survives ``reboot()`` and, with ``--vm-keep-state``,
the next run. ``tpm.provisioning`` runs once, on a new state directory, before the first start.

A booted snapshot holds the TPM too: QEMU's migration stream carries swtpm's state blobs (permanent,
volatile and saved state, fetched over the control channel), and a restore starts swtpm on an empty
state directory that QEMU fills from the stream before the guest runs.
"""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import stat
import subprocess
import time
from pathlib import Path

from vmtest.config.firmware import TpmOptions
from vmtest.core.errors import LaunchError
from vmtest.core.log import log
from vmtest.core.proc import ProcessError, kill_group, run, spawn, version_line
from vmtest.vm.paths import MachinePaths

PROVISIONED = ".vmtest-provisioned"  # in the state directory: provisioning ran (or was not asked for)
PERMANENT_STATE = "tpm2-00.permall"  # swtpm's permanent TPM 2.0 state, in the state directory


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

    def start(self, provision: bool = True, fresh: bool = False, timeout: float = 10.0) -> None:
        """Start swtpm on the machine's TPM state: ``fresh``: an empty one (whatever an earlier launch left);
        ``provision``: run ``tpm.provisioning`` on a new state first, else only mark it provisioned (a
        restore: QEMU hands swtpm the saved TPM's state, provisioned at the save)."""
        if fresh:
            shutil.rmtree(self.paths.tpm_state, ignore_errors=True)
        if provision:
            self.provision()
        else:
            self.paths.tpm_state.mkdir(parents=True, exist_ok=True)
            (self.paths.tpm_state / PROVISIONED).write_text("")
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


def has_state(paths: MachinePaths) -> bool:
    """Whether the machine's TPM has state of its own (kept, or left by an earlier launch): swtpm's
    permanent state file, or the provisioning mark."""
    state = paths.tpm_state
    return (state / PERMANENT_STATE).exists() or (state / PROVISIONED).exists()


def identity(tpm: TpmOptions) -> str:
    """What of a machine's TPM is in its snapshot's key besides QEMU's argv ("" without a TPM): the swtpm
    program's version (the format of the state blobs QEMU saves) and the provisioning command (it made
    the saved TPM's state)."""
    if not tpm.enable:
        return ""
    return f"swtpm {version_line(tpm.package)}\nprovisioning {tpm.provisioning!r}"


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
