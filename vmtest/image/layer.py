"""The base layer of a suite: what every image of it starts from.

A layer is mmdebstrap's ``minbase`` of the suite with the packages vmtest
itself puts in an image (:data:`BASE_PACKAGES`, and those its options need,
such as the guest agent: :func:`packages`), kept as a zstd tarball with its
apt package lists (``layers/<key>/root.tar.zst``). Every configuration with
the same suite and options shares it. An image is then built by unpacking the
layer and installing only the packages its configuration adds
(mmdebstrap's ``custom`` variant on top of it: apt resolves them against the
layer's installed packages, dpkg installs the difference): a change of one
package list costs that package's installation, not a whole bootstrap.

A layer is only a build input: images are complete without it (nothing
refers to it at run time), so `vmtest cache gc` may drop it like any unused
entry and the next build makes it again. The layer's lists are refreshed by
each image build's ``apt-get update`` (against the layer's copies: only what
changed is fetched), so a package added later resolves against the current
archive; what the layer itself holds is as old as the layer.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shlex
import shutil
from collections.abc import Callable
from pathlib import Path

from vmtest.config.machine import MachineConfig
from vmtest.core.cache import Cache
from vmtest.core.errors import ImageBuildError
from vmtest.core.log import log, nested
from vmtest.core.proc import ProcessError, run
from vmtest.image import scratch, space

# What every guest has besides the requested packages.
BASE_PACKAGES = ("systemd-sysv", "udev", "iproute2", "kmod", "netcat-openbsd", "procps", "busybox-static")

# dpkg leaves out documentation and translations (the image does not need them; 30-40% of a small image).
DPKG_OPTIONS = (
    "path-exclude=/usr/share/doc/*",
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/locale/*",
    "path-include=/usr/share/locale/locale.alias",
)

LAYER_BUILDER_VERSION = "1"
# this module's own code: any change to how layers are made invalidates them
SOURCE_DIGEST = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()
_ARCHIVES = '"$1/var/cache/apt/archives"'  # apt's .deb cache in the root being built (a shell word)
TARBALL = "root.tar.zst"
# GNU tar options that keep what dpkg made: owners by number, modes, extended attributes (file capabilities).
TAR_KEEP = ("--numeric-owner", "--xattrs", "--xattrs-include=*")


def packages(config: MachineConfig) -> tuple[str, ...]:
    """What the layer of ``config``'s image holds: the base packages and those its options need in the
    image (the guest agent, ...); the rest of its packages are the image's own."""
    return tuple(sorted(set(BASE_PACKAGES) | set(config.virtualisation.image_packages())))


def layer_key(suite: str, pkgs: tuple[str, ...]) -> str:
    """The cache key of the layer of ``suite`` with packages ``pkgs`` (pure)."""
    inputs = {
        "builder": LAYER_BUILDER_VERSION,
        "builder_source": SOURCE_DIGEST,
        "suite": suite,
        "packages": list(pkgs),
    }
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:32]


def common_options(debs: Path, verbose: bool) -> list[str]:
    """mmdebstrap options both a layer's build and an image's build on it use: dpkg's exclusions, and the
    cache's .deb files offered to apt before it downloads anything (kept after the install: the image's
    customize hook moves new ones into the cache)."""
    q = shlex.quote(str(debs))
    return [
        "--mode=unshare",
        *(["--verbose"] if verbose else []),
        "--skip=essential/unlink",
        *(f"--dpkgopt={o}" for o in DPKG_OPTIONS),
        f'--setup-hook=mkdir -p "$1/var/cache/apt/archives" && {_copy_debs(q, _ARCHIVES)}',
    ]


def harvest_hook(new_debs: Path) -> str:
    """A customize hook that links the .debs apt fetched (with the cache's own) into ``new_debs``; the
    builder then moves the new ones into the cache."""
    q = shlex.quote(str(new_debs))
    return f"--customize-hook=mkdir -p {q} && {_copy_debs(_ARCHIVES, q)}"


def _copy_debs(source: str, target: str) -> str:
    """Shell: link (across file systems: copy) the .debs in ``source`` into ``target`` (both shell words);
    none there is no error."""
    return f"(cp -l {source}/*.deb {target}/ 2>/dev/null || cp {source}/*.deb {target}/ 2>/dev/null || true)"


def layer_argv(suite: str, pkgs: tuple[str, ...], debs: Path, new_debs: Path, out: Path, verbose: bool) -> list[str]:
    """mmdebstrap's command line that writes the layer of ``suite`` with ``pkgs`` as the tarball ``out``
    (pure). The package lists stay in it (image builds resolve their packages against them); the .debs
    do not."""
    return [
        "mmdebstrap",
        "--variant=minbase",
        *common_options(debs, verbose),
        f"--include={','.join(sorted(pkgs))}",
        "--skip=cleanup/apt/lists",
        harvest_hook(new_debs),
        suite,
        str(out),
    ]


def unpack_hook(tarball: Path) -> str:
    """The setup hook of an image's build that unpacks the layer into the empty root."""
    keep = " ".join(TAR_KEEP)
    # without the tarball's /dev: mmdebstrap makes its own there (its mount step fails on existing entries)
    return f'--setup-hook=tar --zstd {keep} --exclude=./dev/* -C "$1" -xpf {shlex.quote(str(tarball))}'


def ensure(cache: Cache, suite: str, pkgs: tuple[str, ...], logger: logging.Logger, into: Path) -> Path:
    """The tarball of the layer of ``suite`` with ``pkgs`` (built into the cache if missing), linked to
    ``into`` (returned): the build reads its own link, so another process removing the entry meanwhile
    (``--vm-rebuild``, ``vmtest cache gc``) does not take it away."""
    for _ in range(3):
        tarball = _ensure(cache, suite, pkgs, logger)
        try:
            os.link(tarball, into)
        except FileNotFoundError:
            continue  # removed between the lookup and the link: look again (build it again)
        except OSError:  # another file system (a cache directory on several mounts): a copy
            shutil.copyfile(tarball, into)
        return into
    raise ImageBuildError(f"using the base layer of {suite}", "its cache entry kept being removed while in use")


def _ensure(cache: Cache, suite: str, pkgs: tuple[str, ...], logger: logging.Logger) -> Path:
    key = layer_key(suite, pkgs)

    def builder(tmp: Path) -> dict[str, object]:
        new_debs = tmp / "new-debs"
        argv = layer_argv(suite, pkgs, cache.debs, new_debs, tmp / TARBALL, logger.isEnabledFor(logging.DEBUG))
        # mmdebstrap makes the tree it packs in TMPDIR: in memory when the host has room
        with (
            scratch.tree_dir(tmp / "scratch", f"layers-{key}") as tree,
            nested(logger, f"mmdebstrap: base layer of {suite} ({', '.join(pkgs)})"),
        ):
            tree.mkdir()
            mmdebstrap(
                argv,
                tree,
                tmp,
                logger,
                lambda exc: ImageBuildError(
                    f"building the base layer of {suite}", str(exc).split(": ", 1)[0], exc.tail
                ),
            )
        keep_debs(new_debs, cache.debs)
        log(logger, f"base layer of {suite}: {(tmp / TARBALL).stat().st_size >> 20} MiB")
        return {"suite": suite, "packages": list(pkgs)}

    return cache.build("layers", key, builder, logger) / TARBALL


def keep_debs(new: Path, debs: Path) -> None:
    """Move newly downloaded .debs into the shared deb cache (atomic renames)."""
    if not new.is_dir():
        return
    for deb in new.glob("*.deb"):
        dest = debs / deb.name
        if not dest.exists():
            try:
                os.rename(deb, dest)
            except OSError:
                shutil.copy2(deb, dest.with_suffix(".tmp"))
                os.rename(dest.with_suffix(".tmp"), dest)
    shutil.rmtree(new, ignore_errors=True)


def progress_line(line: str) -> bool:
    """Which of mmdebstrap's lines are shown as a build's progress (its own, and the customize hook's)."""
    return line.startswith(("I: ", "E: ", "W: ", "vmtest-customize:"))


def mmdebstrap(
    argv: list[str],
    tmpdir: Path,
    work: Path,
    logger: logging.Logger,
    explain: Callable[[ProcessError], ImageBuildError],
) -> None:
    """Run a build's mmdebstrap (``TMPDIR`` = ``tmpdir``), its progress lines logged; a failure is an
    ImageBuildError: a full disk (``work``'s file system) said so, anything else as ``explain`` tells it."""
    try:
        run(
            argv, what="mmdebstrap", logger=logger, timeout=1800, line_filter=progress_line, env={"TMPDIR": str(tmpdir)}
        )
    except ProcessError as exc:  # its output is in the error, once
        raise space.explain("\n".join(exc.tail), work, "running mmdebstrap") or explain(exc) from None
