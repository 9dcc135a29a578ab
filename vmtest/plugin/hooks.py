"""The pytest plugin (entry point ``pytest11: vmtest`` -> this module).

``@pytest.mark.vmtest(nodes={"server": cfg, "client": cfg}, scope="function")``
on a test (or its class or module) gives the test one fixture per node name
holding its :class:`~vmtest.machine.machine.Machine` (``machine`` too when
there is a single node) and the ``vms`` fixture
(:class:`~vmtest.net.driver.Driver`) for the whole network. Machines start
lazily on first use, or all at once with ``vms.start_all()``. With
``scope="module"`` or ``"class"`` the machines boot once and are shared by
the tests of that module/class using the same nodes. ``vm_factory``
creates stand-alone machines (no network) for a test.

This module holds the hooks and the settings; the fixtures live in
:mod:`vmtest.plugin.fixtures`, node fixtures in :mod:`vmtest.plugin.nodes`,
the NixOS script globals (``start_all``, ``subtest``, ...) in
:mod:`vmtest.plugin.nixos_globals`, failure reports in :mod:`vmtest.plugin.report` (and in pytest-html's report:
:mod:`vmtest.plugin.htmlreport`), each test's timeline in
:mod:`vmtest.plugin.timelines`, ``--vm-record`` in :mod:`vmtest.plugin.recording`.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Generator
from typing import IO

import pluggy
import pytest

from vmtest.config.settings import in_force
from vmtest.core.cache import TRIM_GRACE, Cache
from vmtest.core.errors import ConfigError
from vmtest.core.log import get_logger, size_text
from vmtest.core.proc import supervise_children
from vmtest.core.statedirs import sweep_leftovers
from vmtest.machine.machine import Machine
from vmtest.machine.video import find_ffmpeg
from vmtest.plugin import (
    fixtures,
    htmlreport,
    interactive,
    nixos_globals,
    progress,
    recording,
    snapshotusers,
    split,
    timelines,
)
from vmtest.plugin.debughook import pause
from vmtest.plugin.fixtures import DRIVERS_KEY, STORE_KEY, output_dir
from vmtest.plugin.frames import hide_vmtest_frames
from vmtest.plugin.keep import keep_drivers
from vmtest.plugin.keep import report as keep_report
from vmtest.plugin.nodes import collected_marks, register_nodes
from vmtest.plugin.report import clear, safe_name, save_machines
from vmtest.plugin.report import text as report_text
from vmtest.plugin.settings import add_pytest_options, settings
from vmtest.plugin.subtests import split_junit_subtests


def pytest_addoption(parser: pytest.Parser) -> None:
    add_pytest_options(parser)


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(fixtures, "vmtest-fixtures")
    config.pluginmanager.register(nixos_globals, "vmtest-nixos-globals")
    config.pluginmanager.register(split, "vmtest-split")
    config.addinivalue_line("markers", "integration: boots real QEMU guests (slow)")
    config.addinivalue_line(
        "markers",
        "vmtest(nodes, scope='function'): run the test against QEMU machines built from "
        "nodes={name: MachineConfig}; each name becomes a test argument holding its Machine",
    )


SESSION_START_KEY = pytest.StashKey[float]()
SESSION_MARK_KEY = pytest.StashKey[IO[str]]()  # Cache.join_sessions: this session uses the cache
TRIMMED_KEY = pytest.StashKey["list[tuple[str, int]]"]()


def pytest_sessionstart(session: pytest.Session) -> None:
    session.config.stash[SESSION_START_KEY] = time.time()
    run = settings(session.config)  # a bad setting stops the run before any test (pytest.UsageError)
    # what a Machine or ImageStore a test builds itself takes its defaults from, until pytest is done
    in_force_until_done = contextlib.ExitStack()
    in_force_until_done.enter_context(in_force(run))
    session.config.add_cleanup(in_force_until_done.close)
    try:
        session.config.stash[SESSION_MARK_KEY] = Cache(run.cache_dir).join_sessions()
    except OSError:
        pass  # (a cache that cannot be written: nothing will be trimmed either)
    split_junit_subtests(session.config)
    progress.install(session.config)  # (here: pytest's terminal reporter exists by now)
    sweep_leftovers(Cache(run.cache_dir), get_logger("leftovers"))
    if run.record:
        try:
            find_ffmpeg()
        except ConfigError as exc:
            raise pytest.UsageError(f"vmtest: {exc}") from None
    if run.keep_on_failure:
        supervise_children(True)  # QEMU and switches may then outlive the run (see vmtest.plugin.keep)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    """One line saying where this session's images came from (cache, remote cache, built)."""
    store = config.stash.get(STORE_KEY, None)
    if store is not None and store.origins:
        terminalreporter.write_line(f"vmtest: {store.summary()}")
    trimmed = config.stash.get(TRIMMED_KEY, [])
    if trimmed:
        terminalreporter.write_line(
            f"vmtest: the cache was over its bound ({size_text(settings(config).cache_max_size)}, "
            f"--vm-cache-max-size): removed {len(trimmed)} entr{'y' if len(trimmed) == 1 else 'ies'} "
            f"({size_text(sum(n for _, n in trimmed))}) this session did not use, least recently used first"
        )


def pytest_sessionfinish(session: pytest.Session) -> None:
    supervise_children(False)
    config = session.config
    run = settings(config)
    cache = Cache(run.cache_dir)
    snapshotusers.write(config, cache)
    mark = config.stash.get(SESSION_MARK_KEY, None)
    try:
        if hasattr(config, "workerinput"):
            return  # an xdist worker: the controller trims once, after every worker
        if mark is not None and not Cache.alone(mark):
            # another session on this cache runs on (one that started this one, say: a test suite running
            # pytest on its own cache): it trims at its end; this one could remove what it is about to open
            get_logger("cache").debug("another pytest session uses the cache: not trimming it")
            return
        start = config.stash.get(SESSION_START_KEY, time.time())
        used_since = min(start, time.time() - TRIM_GRACE)
        config.stash[TRIMMED_KEY] = cache.trim(run.cache_max_size, used_since)
    finally:
        if mark is not None:
            mark.close()


KEEP_KEY = pytest.StashKey[bool]()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if settings(config).interactive:
        interactive.check_selection(items)


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """With --vm-interactive: a REPL over the test's machines instead of its body."""
    return interactive.run(pyfuncitem) if settings(pyfuncitem.config).interactive else None


@pytest.hookimpl(tryfirst=True)
def pytest_pycollect_makeitem(collector: pytest.Module | pytest.Class, name: str, obj: object) -> None:
    """Before a test function is collected, make its vmtest node names fixtures (see vmtest.plugin.nodes)."""
    if callable(obj) and name.startswith("test"):
        register_nodes(collector.config, collected_marks(collector, obj))


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    clear(output_dir(item.config), item.nodeid)  # its directory holds only what this run leaves
    timelines.begin(item)  # before the fixtures: a module-scoped boot is on the first test's timeline
    run = settings(item.config)
    if run.record:

        def machines() -> list[Machine]:
            watch = item.stash.get(DRIVERS_KEY, None)
            return [m for d in (watch.drivers if watch else []) for m in list(d.machines.values())]

        recording.begin(item, machines, run.output_dir / safe_name(item.nodeid), run.record_interval)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> Generator[None, None, None]:
    watch = item.stash.get(DRIVERS_KEY, None)
    if item.stash.get(KEEP_KEY, False) and watch is not None:
        # --vm-keep-on-failure: keep a failed test's machines before its fixtures release them.
        recording.finish(item)
        keep_drivers(watch.drivers, settings(item.config), item.nodeid)
    yield
    timelines.end(item)
    recording.finish(item)  # when the body never ran


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pluggy.Result[pytest.TestReport], None]:
    hide_vmtest_frames(call.excinfo)  # a vmtest error's report starts at the user's line
    outcome = yield
    report = outcome.get_result()
    videos = recording.finish(item) if report.when == "call" or report.failed else {}
    watch = item.stash.get(DRIVERS_KEY, None)
    if report.when == "call" and watch is not None:
        snapshotusers.note(item, watch.drivers)
    base = htmlreport.report_dir(item.config)
    if report.when != "call" or not report.failed or watch is None or not watch.drivers:
        if videos:
            report.sections.append(("vmtest screen videos", "\n".join(f"{n}: {p}" for n, p in videos.items())))
            if base is not None:
                htmlreport.add_extras(report, htmlreport.section_html([], base, None, videos))
        return
    drawn = timelines.close_for_failure(item, call, output_dir(item.config) / safe_name(item.nodeid))
    error = call.excinfo.value if call.excinfo is not None else None
    began = time.monotonic() - call.duration
    machines = save_machines(watch.drivers, output_dir(item.config), item.nodeid, error, began)
    text = report_text(machines)
    if videos:
        text += "\n\n" + "\n".join(f"{name}: screen video {path}" for name, path in videos.items())
    aborted = [d.aborted for d in watch.drivers if d.aborted]
    if aborted:
        text = f"vmtest: {aborted[0]}; its machines were killed\n\n" + text
    run = settings(item.config)
    if run.debug_hook:
        watch.cancel()  # no global timeout while the user looks
        pause(item.config, item.nodeid, watch.drivers, output_dir(item.config) / f"continue-{os.getpid()}")
    if run.keep_on_failure:
        kept = keep_report(keep_drivers(watch.drivers, run, item.nodeid, dry_run=True), run)
        text = f"{text}\n\n{kept}" if kept else text
        item.stash[KEEP_KEY] = True  # kept at the start of the teardown (after --pdb, say)
    report.sections.append(("vmtest machines", text))
    # JUnit XML (pytest --junitxml) writes the item's user properties (from its teardown report).
    item.user_properties.append(("vmtest_report", text))
    if drawn is not None:
        report.sections.append(("vmtest timeline", f"{drawn.text}\n(picture: {drawn.svg_path})"))
    if base is not None:  # pytest --html=...: the screenshots inline, the console tails, links to the files
        svg = drawn.svg if drawn is not None else None
        htmlreport.add_extras(report, htmlreport.section_html(machines, base, svg, videos))
