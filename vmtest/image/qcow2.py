"""How vmtest writes the read-only disks of its cache (image bases, module disks, bootable disks): ext4
file systems made from a directory tree, stored as compressed qcow2."""

from __future__ import annotations

from pathlib import Path

# zstd-compressed clusters: a base image takes a third of its raw size or less (measured: a 544 MB
# base with its module tree became 153 MB). QEMU inflates clusters on the host as the guest reads
# them, outside the emulated CPU; overlays above such a base are written uncompressed as usual.
COMPRESSION = ("-c", "-o", "compression_type=zstd")


def convert_compressed(source: Path, dest: Path, source_format: str = "raw") -> list[str | Path]:
    """The ``qemu-img convert`` argv that writes ``source`` as the compressed qcow2 ``dest``."""
    return ["qemu-img", "convert", *COMPRESSION, "-f", source_format, "-O", "qcow2", source, dest]


def mkfs_ext4(tree: Path, dest: Path, label: str, mib: int, journal: bool = True) -> list[str | Path]:
    """The ``mkfs.ext4`` argv that makes the raw file ``dest`` (``mib`` MiB) an ext4 labelled ``label``
    holding ``tree``, owned by root, nothing reserved; ``journal=False`` for a disk that is never written."""
    features = [] if journal else ["-O", "^has_journal"]
    return [
        "mkfs.ext4",
        "-q",
        "-F",
        "-L",
        label,
        "-m",
        "0",
        *features,
        "-E",
        "root_owner=0:0",
        "-d",
        tree,
        dest,
        f"{mib}M",
    ]
