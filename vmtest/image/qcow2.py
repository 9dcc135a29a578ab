"""How vmtest writes the read-only disks of its cache (image bases, module disks, bootable disks)."""

from __future__ import annotations

from pathlib import Path

# zstd-compressed clusters: a base image takes a third of its raw size or less (measured: a 544 MB
# base with its module tree became 153 MB). QEMU inflates clusters on the host as the guest reads
# them, outside the emulated CPU; overlays above such a base are written uncompressed as usual.
COMPRESSION = ("-c", "-o", "compression_type=zstd")


def convert_compressed(source: Path, dest: Path, source_format: str = "raw") -> list[str | Path]:
    """The ``qemu-img convert`` argv that writes ``source`` as the compressed qcow2 ``dest``."""
    return ["qemu-img", "convert", *COMPRESSION, "-f", source_format, "-O", "qcow2", source, dest]
