from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from vmtest import MachineConfig
from vmtest.image import ImageStore, layer

REPO = Path(__file__).resolve().parents[2]
# pytest as a user runs it, without this run's cache plugin and live logging (``PYTEST + (args...)``).
PYTEST = (sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-o", "log_cli=false")


@dataclass(frozen=True)
class PytestRun:
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def _run_pytest(*args: str, cwd: Path = REPO, env: Mapping[str, str] | None = None, timeout: float = 900) -> PytestRun:
    proc = subprocess.run(
        [*PYTEST, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    return PytestRun(proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture
def run_pytest() -> Callable[..., PytestRun]:
    """``run_pytest(*args, cwd=REPO, env=None, timeout=900)`` -> a finished ``PytestRun`` of
    ``python -m pytest -p no:cacheprovider -o log_cli=false *args`` (``env``: the whole environment,
    default this one's; stdout and stderr captured as text)."""
    return _run_pytest


def seeded_cache(store: ImageStore, root: Path, *paths: Path) -> Path:
    """A private cache at ``root`` holding hard links to the shared cache's kernel entry, the entries
    holding ``paths`` (files of the shared cache), its downloaded .debs and its ``accel.json``: runs on it
    build nothing they need not, and image builds download nothing already downloaded."""
    shared = store.cache.root
    kernel = store.kernel().initrd
    for path in (kernel, *paths):
        kind, key = path.relative_to(shared).parts[:2]
        if not (root / kind / key).exists():
            (root / kind).mkdir(parents=True, exist_ok=True)
            subprocess.run(["cp", "-al", str(shared / kind / key), str(root / kind / key)], check=True)
    if not (root / "debs").exists():
        # (best effort: a .deb another run renames meanwhile is left out)
        subprocess.run(["cp", "-al", str(store.cache.debs), str(root / "debs")], stderr=subprocess.DEVNULL, check=False)
    if (shared / "accel.json").exists():
        subprocess.run(["cp", str(shared / "accel.json"), str(root / "accel.json")], check=True)
    return root


def seed_base_layer(store: ImageStore, config: MachineConfig, root: Path) -> None:
    """Copy the shared cache's base layer of ``config`` (built there once if missing) into the cache at ``root``:
    a test that builds an image in a cache of its own builds that image, not its base layer again (~26 s of
    mmdebstrap, also when the test is about something that happens after it)."""
    pkgs = layer.packages(config)
    with tempfile.TemporaryDirectory() as tmp:
        layer.ensure(store.cache, config.suite, pkgs, store.logger, Path(tmp) / "layer")
    key = layer.layer_key(config.suite, pkgs)
    (root / "layers").mkdir(parents=True, exist_ok=True)
    shutil.copytree(store.cache.path("layers", key), root / "layers" / key)


@pytest.fixture(scope="session")
def store(vm_image_store: ImageStore) -> ImageStore:
    return vm_image_store


@pytest.fixture
def short_tmpdir():
    """A fresh directory right below /tmp, for a child run's TMPDIR: pytest's tmp_path is too long for the unix
    sockets of a test network below it (vmtest refuses such a TMPDIR with a HostError)."""
    path = Path(tempfile.mkdtemp(prefix="vt-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def nonce() -> str:
    """A value that makes a config's image key unique to this test run."""
    return uuid.uuid4().hex


def _vmtest_cli(
    *args: str, cache_dir: Path | None = None, env: dict[str, str] | None = None, **kwargs
) -> subprocess.Popen[str]:
    full_env = dict(os.environ, **(env or {}))
    if cache_dir is not None:
        full_env["VMTEST_CACHE_DIR"] = str(cache_dir)
    return subprocess.Popen(
        [sys.executable, "-m", "vmtest.cli", *args],
        cwd=REPO,
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        **kwargs,
    )


@pytest.fixture
def cli():
    """``cli(*args, cache_dir=None, env=None)`` -> a running ``python -m vmtest.cli`` (stdout+stderr piped)."""
    return _vmtest_cli


def _processes_mentioning(text: str) -> dict[int, str]:
    """Live processes (other than this one) whose command line contains ``text``: pid -> command line."""
    found = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            found[int(proc.name)] = cmdline
    return found


@pytest.fixture
def processes_mentioning():
    """``processes_mentioning(text)`` -> {pid: command line} of live processes mentioning ``text``."""
    return _processes_mentioning


@pytest.fixture
def chromium_dom(tmp_path):
    """``chromium_dom(page)`` -> the DOM of the HTML file ``page`` after headless Chromium ran its scripts
    (``--dump-dom``); skips the test when Debian's chromium is not installed."""
    import shutil
    import signal

    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("chromium is not installed (apt-get install chromium; `./run tests` installs it)")

    def dump(page: Path) -> str:
        proc = subprocess.Popen(
            [
                chromium,
                "--headless",
                "--no-sandbox",  # we run as root
                "--disable-gpu",
                "--no-first-run",
                f"--user-data-dir={tmp_path / 'chromium-profile'}",
                "--window-size=1400,3000",
                "--virtual-time-budget=15000",
                "--dump-dom",
                page.as_uri(),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            start_new_session=True,
        )
        try:
            out, _ = proc.communicate(timeout=180)
        finally:
            try:
                os.killpg(proc.pid, signal.SIGKILL)  # chromium's helper processes too
            except ProcessLookupError:
                pass
            proc.wait()
        return out

    return dump
