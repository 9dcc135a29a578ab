"""The torture suite: repeated kills and faults, with figures (trials, failures, worst time to error).

Run (see README "Torture suite"): ``VMTEST_TORTURE_TRIALS=4 .venv/bin/python -m pytest tests/torture
--run-torture -s -p no:randomly -o log_cli=false``. Each test appends its row to
``vmtest-output/torture.md`` (or ``$VMTEST_TORTURE_RESULTS``) and prints it; a test fails when any trial
failed its target. ``VMTEST_TORTURE_BUDGET`` (seconds, default none): a case starts no new trial once it
has run this long (its row says how many trials it ran).
"""

from __future__ import annotations

import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.integration.conftest import PYTEST as USER_PYTEST
from tests.integration.conftest import seeded_cache
from vmtest.core.cache import Cache
from vmtest.image import ImageStore

pytestmark = pytest.mark.torture

TRIALS = int(os.environ.get("VMTEST_TORTURE_TRIALS", "4"))
BUDGET = float(os.environ.get("VMTEST_TORTURE_BUDGET", "inf"))
RESULTS = Path(os.environ.get("VMTEST_TORTURE_RESULTS", "vmtest-output/torture.md"))
REPO = Path(__file__).resolve().parents[2]
KINDS = ("qemu-system-x86_64", "vde_switch", "swtpm", "tesseract")
EXIT_LIMIT = 120.0  # a run must end this soon after its signal
PYTEST = [*USER_PYTEST, "-q", "-p", "no:randomly"]


@dataclass
class Figures:
    """One case's row: trials, failures, the mean wall time of a trial and the worst time (to error)."""

    case: str
    trials: int = 0
    failures: int = 0
    worst: float = 0.0
    notes: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    trial_started: float = field(default_factory=time.monotonic)
    spent: float = 0.0  # wall time of the trials so far

    def more(self, trial: int) -> bool:
        """Whether to run trial number ``trial`` (counting from 0): TRIALS of them, within BUDGET."""
        self.trial_started = time.monotonic()
        return trial < TRIALS and self.trial_started - self.started < BUDGET

    def trial(self, ok: bool, seconds: float = 0.0, note: str = "") -> None:
        self.trials += 1
        self.failures += not ok
        self.worst = max(self.worst, seconds)
        self.spent += time.monotonic() - self.trial_started
        if not ok and note:
            self.notes.append(note)

    def write(self, check: bool = True) -> None:
        per_trial = self.spent / self.trials if self.trials else 0.0
        worst = f"{self.worst:.1f} s" if self.worst else "-"
        row = f"| {self.case} | {self.trials} | {self.failures} | {per_trial:.0f} s | {worst} |"
        print("\nTORTURE " + row, flush=True)
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        if not RESULTS.exists():
            RESULTS.write_text("| case | trials | failures | time per trial | worst time |\n|---|---|---|---|---|\n")
        with RESULTS.open("a") as fh:
            fh.write(row + "\n")
        if check:
            self.check()

    def check(self) -> None:
        assert self.failures == 0, self.notes


def leftovers(state: Path) -> list[str]:
    """QEMU, vde_switch, swtpm and tesseract processes whose command line mentions ``state``, and the
    vmtest state directories in it."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            exe = (proc / "exe").resolve().name
        except OSError:
            continue
        if str(state) in cmdline and exe in KINDS:
            found.append(f"{exe} ({proc.name})")
    found += [p.name for p in state.iterdir() if p.name.startswith("vmtest-")]
    return found


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A directory for the runs' TMPDIRs with a short path (pytest's ``tmp_path`` leaves too little room for
    the unix sockets vmtest makes below TMPDIR: a ``HostError``)."""
    path = Path(tempfile.mkdtemp(prefix="vt-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def next_session(cwd: Path, state: Path) -> None:
    (cwd / "test_next.py").write_text("def test_nothing():\n    assert True\n")
    subprocess.run([*PYTEST, "test_next.py"], cwd=cwd, env=dict(os.environ, TMPDIR=str(state)), timeout=300)


TWO_NODES = """
import os, time
from pathlib import Path
from typing import Any
import pytest
from vmtest import MachineConfig

@pytest.mark.vmtest(nodes={"a": MachineConfig(), "b": MachineConfig()})
def test_two(vms, a, b):
    vms.start_all()
    a.succeed("true")
    b.succeed("true")
    Path(os.environ["UP_MARKER"]).write_text(str(os.getpid()))
    time.sleep(600)
"""


@pytest.mark.parametrize("target", ["pytest", "xdist-worker"])
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["SIGINT", "SIGKILL"])
def test_interrupted_runs_leave_nothing_after_the_next_run(
    tmp_path: Path, short_tmp: Path, sig: signal.Signals, target: str
) -> None:
    figures = Figures(f"{sig.name} of {target} mid-test: leftovers after the next run (time: until pytest ended)")
    (tmp_path / "test_two.py").write_text(TWO_NODES)
    trial = 0
    while figures.more(trial):
        trial += 1
        state = short_tmp / f"s{trial}"
        state.mkdir()
        marker = tmp_path / f"up{trial}"
        xdist = ["-n", "1"] if target == "xdist-worker" else []
        proc = subprocess.Popen(
            [*PYTEST, *xdist, "test_two.py"],
            cwd=tmp_path,
            env=dict(os.environ, TMPDIR=str(state), UP_MARKER=str(marker)),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            deadline = time.monotonic() + 600
            while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.2)
            if not marker.exists():
                figures.trial(False, note=f"trial {trial}: the machines never came up")
                continue
            time.sleep(random.uniform(0, 2))  # somewhere mid-test
            victim = int(marker.read_text()) if target == "xdist-worker" else proc.pid
            signalled = time.monotonic()
            os.kill(victim, sig)
            if target == "xdist-worker":
                time.sleep(5)
                os.killpg(proc.pid, signal.SIGKILL)  # the controller would carry on with a new worker
            try:
                proc.wait(EXIT_LIMIT)
            except subprocess.TimeoutExpired:
                figures.trial(
                    False, EXIT_LIMIT, f"trial {trial}: pytest still running {EXIT_LIMIT:.0f}s after {sig.name}"
                )
                continue
            exit_time = time.monotonic() - signalled
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        next_session(tmp_path, state)
        deadline = time.monotonic() + 15
        while leftovers(state) and time.monotonic() < deadline:
            time.sleep(0.5)
        left = leftovers(state)
        figures.trial(not left, exit_time, note=f"trial {trial}: {left}")
    figures.write()


BUILD_TARGET = """
from vmtest import MachineConfig
cfg = MachineConfig(packages=["hello"], files={"/etc/torture": "NONCE"})
"""


def broken_entries(cache: Cache) -> list[str]:
    """Entries that look complete (meta.json) but are not: an image whose qcow2 fails ``qemu-img check``."""
    broken = []
    for entry in cache.entries():
        if entry.kind != "images":
            continue
        disk = entry.path / "root.qcow2"
        ok = disk.is_file() and subprocess.run(["qemu-img", "check", "-q", str(disk)], check=False).returncode == 0
        if not ok:
            broken.append(entry.key)
    return broken


def build(target: Path, cache: Path, **kwargs: Any) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "vmtest.cli", "build", f"{target}::cfg"],
        cwd=REPO,
        env=dict(os.environ, VMTEST_CACHE_DIR=str(cache)),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        **kwargs,
    )


def test_killed_image_builds_leave_no_broken_entry(tmp_path: Path, vm_image_store: ImageStore) -> None:
    """Each trial builds a new key (a cached one would not be built again) and kills the build 1-30 s in;
    then the last killed key is built to its end."""
    figures = Figures("SIGKILL of an image build at a random moment: entries that look complete but are broken")
    cache = seeded_cache(vm_image_store, tmp_path / "cache")
    target = tmp_path / "cfg.py"
    landed = 0
    trial = 0
    while figures.more(trial):
        trial += 1
        target.write_text(BUILD_TARGET.replace("NONCE", uuid.uuid4().hex))
        proc = build(target, cache)
        time.sleep(random.uniform(1, 30))
        if proc.poll() is None:  # (else the build ended first: nothing to kill, its group is gone)
            landed += 1
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        broken = broken_entries(Cache(cache))
        figures.trial(not broken, note=f"trial {trial}: broken {broken}")
    figures.case += f" ({landed} of {figures.trials} kills before the build ended)"
    after = Figures("the build after those kills succeeds")
    after.more(0)
    proc = build(target, cache)
    out, _ = proc.communicate(timeout=1800)
    after.trial(proc.returncode == 0 and not broken_entries(Cache(cache)), note=out[-2000:])
    figures.write(check=False)
    after.write()
    figures.check()


SESSION = """
import pytest
from vmtest import MachineConfig

CONFIG = MachineConfig(packages=["hello"], files={"/etc/torture": "NONCE"})


@pytest.mark.vmtest(nodes={"m": CONFIG})
def test_session(m):
    assert m.succeed("cat /etc/torture") == "NONCE"
    assert m.succeed("hello").strip() == "Hello, world!"
"""


def session(project: Path, cache: Path, state: Path) -> subprocess.Popen[str]:
    """pytest on ``project``'s test_session.py with ``cache`` and ``state`` as its TMPDIR (output piped)."""
    return subprocess.Popen(
        [*PYTEST, "-rA", f"--vm-output-dir={state / 'out'}", "test_session.py"],
        cwd=project,
        env=dict(os.environ, VMTEST_CACHE_DIR=str(cache), TMPDIR=str(state)),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def test_two_concurrent_sessions_on_one_cache(tmp_path: Path, short_tmp: Path, vm_image_store: ImageStore) -> None:
    """Two pytest sessions at once on one (private) cache, each booting a machine of the same new image:
    both green, the image built once, the cache's entries sound, nothing left behind; then a third session
    boots from the cache without building."""
    figures = Figures("2 concurrent pytest sessions booting one new image on one cache: green, 1 build, leftovers")
    trial = 0
    while figures.more(trial):
        trial += 1
        cache = seeded_cache(vm_image_store, tmp_path / f"cache{trial}")
        project = tmp_path / f"project{trial}"
        project.mkdir()
        (project / "test_session.py").write_text(SESSION.replace("NONCE", uuid.uuid4().hex))
        states = [short_tmp / f"s{trial}-{i}" for i in range(3)]
        for state in states:
            state.mkdir()
        procs = [session(project, cache, states[0]), session(project, cache, states[1])]
        try:
            outs = [p.communicate(timeout=1800)[0] for p in procs]
        finally:
            for p in procs:
                if p.poll() is None:
                    os.killpg(p.pid, signal.SIGKILL)
                    p.wait()
        built = [int(m) for out in outs for m in re.findall(r"vmtest: images: .* (\d+) built", out)]
        left = [x for state in states[:2] for x in leftovers(state)]
        broken = broken_entries(Cache(cache))
        third = session(project, cache, states[2])
        out3 = third.communicate(timeout=900)[0]
        left += leftovers(states[2])
        problems = [f"session {i}: exit {p.returncode}" for i, p in enumerate(procs) if p.returncode != 0]
        problems += [f"{sum(built)} builds ({built})"] if sum(built) != 1 else []
        problems += [f"left: {left}"] if left else []
        problems += [f"broken entries: {broken}"] if broken else []
        if third.returncode != 0 or not re.search(r"vmtest: images: 1 from the cache, .* 0 built", out3):
            problems.append("the third session did not boot from the cache: " + out3[-1500:])
        note = f"trial {trial}: " + "; ".join(problems) + " | " + " | ".join(o[-1500:] for o in outs)
        figures.trial(not problems, note=note)
        shutil.rmtree(cache, ignore_errors=True)  # ~0.5 GiB an image
    figures.write()


def test_faults_have_fast_named_errors(tmp_path: Path) -> None:
    """tests/integration/test_faults.py, TRIALS times: every case must pass; its worst time to error (the
    time per trial is that of one run of the whole module)."""
    worst: dict[str, float] = {}
    failures: dict[str, int] = {}
    runs = 0
    budget = Figures("")
    while budget.more(runs):
        done = subprocess.run(
            [*PYTEST, "-s", "-rA", str(REPO / "tests/integration/test_faults.py")],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=1800,
        )
        runs += 1
        budget.trial(done.returncode == 0)
        RESULTS.parent.mkdir(parents=True, exist_ok=True)  # (this case may run alone: `-k faults`)
        (RESULTS.parent / f"torture-faults-{runs}.log").write_text(done.stdout + done.stderr)
        for what, seconds in re.findall(r"FAULT (.+): error after ([\d.]+)s", done.stdout):
            worst[what] = max(worst.get(what, 0.0), float(seconds))
        for name in re.findall(r"FAILED \S+::(\S+)", done.stdout):
            failures[name] = failures.get(name, 0) + 1
    for what, seconds in sorted(worst.items()):
        Figures(f"fault: {what}", trials=runs, worst=seconds, spent=budget.spent).write()
    for name, count in sorted(failures.items()):
        Figures(f"fault test {name} FAILED", trials=runs, failures=count, spent=budget.spent).write(check=False)
    assert not failures, failures


def test_large_outputs_arrive_whole_under_host_load(vm_image_store: ImageStore) -> None:
    """1 MiB of command output, TRIALS times, while six busy loops load the host: every byte must arrive.
    Failed 3 of 12 trials while the backdoor was a virtconsole ("reading 1398104 bytes of output: got
    1359192, then nothing for 60s": QEMU drops what a console's socket cannot take at once); the
    backdoor's virtio serial port is throttled instead."""
    from vmtest import Machine, MachineConfig

    figures = Figures("1 MiB command outputs with six busy loops on the host")
    hogs = [subprocess.Popen(["sh", "-c", "while :; do :; done"]) for _ in range(6)]
    machine = Machine("loaded", MachineConfig(), store=vm_image_store)
    try:
        machine.succeed("true")
        trial = 0
        while figures.more(trial):
            start = time.monotonic()
            try:
                out = machine.succeed("head -c 1048576 /dev/urandom", timeout=120)
                ok, note = len(out.encode(errors="surrogateescape")) == 1 << 20, "short output"
            except Exception as exc:  # (the figure counts it; the run goes on with a fresh machine)
                ok, note = False, str(exc).splitlines()[0][:300]
                machine.release()
                machine = Machine("loaded", MachineConfig(), store=vm_image_store)
            figures.trial(ok, time.monotonic() - start, note=f"trial {trial}: {note}")
            trial += 1
    finally:
        machine.release()
        for hog in hogs:
            hog.kill()
            hog.wait()
    figures.write()
