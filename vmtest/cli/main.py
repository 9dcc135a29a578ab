"""The ``vmtest`` command: build images, inspect the cache, check the host."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeAlias

from vmtest.config.settings import Settings, add_arguments, from_arguments
from vmtest.config.validators import byte_size
from vmtest.core import keptdisks, statedirs
from vmtest.core.cache import TRIM_GRACE, Cache
from vmtest.core.errors import ConfigError, VmtestError
from vmtest.core.log import size_text

# This command's spelling of the run settings it takes (choices, defaults and environment variables
# come from their declarations in vmtest.config.settings).
FLAGS = {"cache_dir": "--cache-dir", "cache_url": "--cache-url", "accel": "--accel"}


def _settings(args: argparse.Namespace) -> Settings:
    return from_arguments(args, FLAGS)


def _size_arg(text: str) -> int:
    try:
        return byte_size("--max-size", text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _human_age(seconds: float) -> str:
    for size, unit in ((86400, "d"), (3600, "h"), (60, "m")):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:.0f}s"


def cmd_build(args: argparse.Namespace) -> int:
    from vmtest.cli.loader import load_config
    from vmtest.image import ImageStore

    name, config = load_config(args.target)
    settings = _settings(args)
    store = ImageStore(settings.cache_dir, cache_url=settings.cache_url)
    start = time.monotonic()
    image = store.get(config, rebuild=args.rebuild)
    print(
        f"{name}: image {image.key} ({image.disk_mib} MiB root, kernel {image.kernel_release}) "
        f"ready in {time.monotonic() - start:.1f}s"
    )
    print(f"  disk:   {image.disk}\n  kernel: {image.kernel}\n  initrd: {image.initrd}")
    return 0


def cmd_cache_ls(args: argparse.Namespace) -> int:
    cache = Cache(_settings(args).cache_dir)
    entries = cache.entries()
    now = time.time()
    print(f"cache: {cache.root}")
    if not entries:
        print("  (empty)")
    for e in entries:
        if e.kind == "kernels":
            what = e.meta.get("package", "")
        elif e.kind == "snapshots" and e.meta.get("foreign_image"):
            what = f"booted foreign image {e.meta['foreign_image']} (first saved by {e.meta.get('machine', '?')})"
        elif e.kind == "snapshots":
            what = (
                f"booted {', '.join(e.meta.get('packages', [])) or 'base system'} (first saved by "
                f"{e.meta.get('machine', '?')}; image {str(e.meta.get('image_key', '?'))[:12]})"
            )
        elif e.kind == "bootdisks":
            spec = e.meta.get("spec", {})
            what = (
                f"bootable disk of image {str(e.meta.get('image_key', '?'))[:12]} ({e.meta.get('disk_mib', '?')} MiB, "
                f"FAT {spec.get('fat_label', '?')}{'' if spec.get('install', True) else ', no boot loader'})"
            )
        else:
            what = f"{e.meta.get('suite', '?')}: " + (", ".join(e.meta.get("packages", [])) or "base system")
        print(
            f"  {e.kind[:-1]:8} {e.key[:32]:32} {size_text(e.size):>10}  "
            f"built {_human_age(now - e.created)} ago, used {_human_age(now - e.last_used)} ago  {what}"
        )
    partial = cache.partial_builds()
    active = sum(1 for _, a in partial if a)
    if active:
        print(f"  ({active} build(s) in progress)")
    if len(partial) - active:
        print(f"  ({len(partial) - active} leftover(s) of interrupted builds, removed by 'vmtest cache gc')")
    return 0


def cmd_cache_gc(args: argparse.Namespace) -> int:
    cache = Cache(_settings(args).cache_dir)
    count, freed = statedirs.sweep(logging.getLogger("vmtest.leftovers"))
    if count:
        print(f"removed {count} state director{'y' if count == 1 else 'ies'} of killed runs ({size_text(freed)})")
    removed = cache.gc(args.older_than, everything=args.all)
    if args.max_size:
        trimmed = cache.trim(args.max_size, time.time() - TRIM_GRACE)
        removed += [f"{item} ({size_text(size)}: over --max-size {size_text(args.max_size)})" for item, size in trimmed]
    for item in removed:
        print(f"removed {item}")
    print(f"{len(removed)} item(s) removed")
    return 0


def cmd_cache_key(args: argparse.Namespace) -> int:
    from vmtest.cli import cachecmd

    return cachecmd.cmd_cache_key(args, _settings(args))


def cmd_cache_export(args: argparse.Namespace) -> int:
    from vmtest.cli import cachecmd

    return cachecmd.cmd_cache_export(args, _settings(args))


def cmd_cache_import(args: argparse.Namespace) -> int:
    from vmtest.cli import cachecmd

    return cachecmd.cmd_cache_import(args, _settings(args))


def cmd_doctor(args: argparse.Namespace) -> int:
    from vmtest.cli.doctor import run_doctor

    text, ok = run_doctor(
        {"cache_dir": args.cache_dir}, logging.getLogger("vmtest.doctor"), check_accel=not args.no_accel
    )
    print(text)
    return 0 if ok else 1


def cmd_run_vm(args: argparse.Namespace) -> int:
    import os

    from vmtest.cli.loader import load_config
    from vmtest.cli.runvm import script
    from vmtest.image import ImageStore
    from vmtest.vm import accel as accel_mod

    name, config = load_config(args.target)
    settings = _settings(args)
    store = ImageStore(settings.cache_dir, cache_url=settings.cache_url)
    image = store.get(config)
    log = logging.getLogger("vmtest.run-vm")
    accel = accel_mod.choose_for(store.cache, image, log, settings.accel)
    text = script(name, config, image, accel, source=args.target)
    if args.print_script:
        sys.stdout.write(text)
        return 0
    virt = config.virtualisation
    if virt.disk_image is not None:  # the script makes the disk if missing: `cache gc` must keep its base
        default = virt.disk_image.format(state_dir=".", name=name)
        disk = Path(os.environ.get("VMTEST_DISK_IMAGE") or default).absolute()
        if disk.exists():
            keptdisks.check(store.cache.refs, disk, name)
        else:
            keptdisks.record(store.cache.refs, disk, chain=[image.disk])
    qemu_args = args.qemu_args[1:] if args.qemu_args[:1] == ["--"] else args.qemu_args
    print(f"vmtest: starting {name} (state: ./{name}.qcow2; Ctrl-A X quits, Ctrl-A C = QEMU monitor)", file=sys.stderr)
    sys.stderr.flush()
    os.execvp("sh", ["sh", "-c", text, f"run-{name}-vm", *qemu_args])  # does not return


def cmd_shell(args: argparse.Namespace) -> int:
    import os

    extra = args.pytest_args[1:] if args.pytest_args[:1] == ["--"] else args.pytest_args
    argv = [sys.executable, "-m", "pytest", args.target, "--vm-interactive", "-p", "no:cacheprovider", *extra]
    if args.cache_dir is not None:
        argv += ["--vm-cache-dir", str(args.cache_dir)]
    os.execv(sys.executable, argv)  # does not return


def cmd_ps(args: argparse.Namespace) -> int:
    from vmtest.vm import keep

    kept = keep.listing(keep.registry(_settings(args).cache_dir))
    if not kept:
        print("no kept machines")
    for k in kept:
        left = max(k.left(), 0)
        print(f"{k.id:24} {k.name:12} killed in {_human_age(left):>4}  pid {k.pid:<8} {k.test}")
    return 0


def cmd_attach(args: argparse.Namespace) -> int:
    from vmtest.vm import keep
    from vmtest.vm.attach import attach_shell

    if "/" in args.name:  # a machine's attach socket (a paused test prints it: --vm-debug-hook)
        socket, title = Path(args.name), Path(args.name).parent.name
    else:
        kept = keep.find(keep.registry(_settings(args).cache_dir), args.name)
        socket, title = Path(kept.attach), f"{kept.id} (kept from {kept.test}, killed in {_human_age(kept.left())})"
    try:
        attach_shell(socket, title)
    except OSError as exc:
        print(f"vmtest: error: attach {args.name}: {exc}", file=sys.stderr)
        return 1
    return 0


def cmd_kill(args: argparse.Namespace) -> int:
    from vmtest.vm import keep

    root = keep.registry(_settings(args).cache_dir)
    if args.all == (args.name is not None):
        print("vmtest: error: kill: give the NAME of a kept machine (see vmtest ps) or --all", file=sys.stderr)
        return 2
    targets = keep.listing(root) if args.all else [keep.find(root, args.name)]
    for kept in targets:
        keep.kill(root, kept)
        print(f"killed {kept.id}")
    if not targets:
        print("no kept machines")
    return 0


def cmd_options(args: argparse.Namespace) -> int:
    from vmtest.config.docs import markdown, text

    sys.stdout.write(markdown() if args.markdown else text())
    return 0


Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
Argument: TypeAlias = tuple[tuple[str, ...], dict[str, Any]]


def arg(*flags: str, **options: Any) -> Argument:
    """One argument of a subcommand: ``add_argument``'s parameters."""
    return flags, options


def command(
    sub: Subparsers, name: str, func: Callable[[argparse.Namespace], int], help: str, *arguments: Argument
) -> argparse.ArgumentParser:
    """The subcommand ``name`` (``help``), its ``arguments`` in order, run by ``func``."""
    p = sub.add_parser(name, help=help)
    for flags, options in arguments:
        p.add_argument(*flags, **options)
    p.set_defaults(func=func)
    return p


TARGET = arg("target", help="PATH::NAME of a MachineConfig in a Python file")
KEPT_NAME = "its id or node name (see vmtest ps)"


def _add_transport_commands(csub: Subparsers) -> None:
    """``vmtest cache key / export / import`` (vmtest.cli.cachecmd)."""
    from vmtest.cli.cachecmd import add_selection_arguments

    k = command(
        csub,
        "key",
        cmd_cache_key,
        "print one hash of every image the tests in PATHS need (a CI cache key): it changes exactly "
        "when one of them would be rebuilt",
    )
    add_selection_arguments(k)
    k.add_argument("--list", action="store_true", help="also list the images (on stderr)")
    e = command(
        csub,
        "export",
        cmd_cache_export,
        "write the images the tests in PATHS need, their kernel and the booted snapshots the tests' "
        "machines used in their last run here into one archive (FILE.tar.zst: zstd, else xz)",
    )
    add_selection_arguments(e)
    e.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="FILE",
        help="the archive to write; a directory (DIR/) gets one archive per entry, DIR/KIND/KEY.tar.zst, "
        "the layout a remote cache serves (--cache-url)",
    )
    e.add_argument("--build", action="store_true", help="build the images that are not cached yet")
    e.add_argument("--no-snapshots", action="store_true", help="leave the booted snapshots out")
    command(
        csub,
        "import",
        cmd_cache_import,
        "install an archive's entries into the cache, each verified against its checksums and complete "
        "or absent; snapshots of another QEMU version are skipped",
        arg("archive", metavar="FILE", help="an archive written by 'vmtest cache export'"),
    )


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vmtest", description="Integration tests in real QEMU virtual machines.")
    add_arguments(p, ["cache_dir", "cache_url"], FLAGS)
    p.add_argument("-v", "--verbose", action="store_true", help="show every line external programs print")
    sub = p.add_subparsers(dest="command", required=True)
    command(
        sub,
        "build",
        cmd_build,
        "build (or find cached) the image of a MachineConfig: vmtest build PATH::NAME",
        TARGET,
        arg("--rebuild", action="store_true", help="build again even if cached"),
    )
    c = sub.add_parser("cache", help="inspect or clean the image cache")
    csub = c.add_subparsers(dest="cache_command", required=True)
    command(csub, "ls", cmd_cache_ls, "list cached images, kernels and booted snapshots with size and age")
    command(
        csub,
        "gc",
        cmd_cache_gc,
        "remove unused entries and leftovers of interrupted builds",
        arg("--older-than", type=float, default=14.0, metavar="DAYS",
            help="remove images and snapshots not used for DAYS days (default 14)"),
        arg("--all", action="store_true", help="remove every entry and the downloaded .debs"),
        arg("--max-size", type=_size_arg, default=0, metavar="SIZE",
            help="then remove the least recently used entries until the cache holds at most SIZE (20G, 512M); "
            "entries used in the last 10 minutes stay"),
    )  # fmt: skip
    _add_transport_commands(csub)
    command(
        sub,
        "doctor",
        cmd_doctor,
        "check host dependencies and the accelerator; prints the fix for each gap",
        arg("--no-accel", action="store_true", help="skip the accelerator probe"),
    )
    r = command(
        sub,
        "run-vm",
        cmd_run_vm,
        "boot one configured machine interactively (serial console on this "
        "terminal, Ctrl-A X quits): vmtest run-vm PATH::NAME [-- QEMU ARGS]",
        TARGET,
        arg("--print-script", action="store_true",
            help="print a standalone start script instead (honours TMPDIR/USE_TMPDIR, SHARED_DIR, "
            "VMTEST_DISK_IMAGE, QEMU_OPTS, QEMU_NET_OPTS, QEMU_KERNEL_PARAMS)"),
    )  # fmt: skip
    add_arguments(r, ["accel"], FLAGS)
    r.add_argument("qemu_args", nargs=argparse.REMAINDER, help="extra QEMU arguments (after --)")
    command(
        sub,
        "shell",
        cmd_shell,
        "boot a test's machines from its marker without running its body and open a Python REPL "
        "(each node, vms, start_all bound; leaving it releases them): vmtest shell PATH::TEST [-- PYTEST ARGS]",
        arg("target", help="PATH::TEST of one test (pytest's node id)"),
        arg("pytest_args", nargs=argparse.REMAINDER, help="more pytest arguments (after --)"),
    )
    command(sub, "ps", cmd_ps, "list the machines kept by --vm-keep-on-failure (and when each is killed)")
    command(
        sub,
        "attach",
        cmd_attach,
        "a root shell in a kept machine on this terminal (Ctrl-] detaches)",
        arg("name", help=f"{KEPT_NAME}, or the attach socket a paused test printed"),
    )
    command(
        sub,
        "kill",
        cmd_kill,
        "end kept machines now: vmtest kill NAME | --all",
        arg("name", nargs="?", help=KEPT_NAME),
        arg("--all", action="store_true", help="every kept machine"),
    )
    command(
        sub,
        "options",
        cmd_options,
        "list the MachineConfig fields, the virtualisation options and the run settings",
        arg("--markdown", action="store_true", help="print docs/options.md (with the parity table with qemu-vm.nix)"),
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )
    try:
        command: Callable[[argparse.Namespace], int] = args.func  # set by each subparser (set_defaults)
        return command(args)
    except VmtestError as exc:
        print(f"vmtest: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("vmtest: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
