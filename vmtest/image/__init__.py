"""The image store: from a MachineConfig to a bootable, cached Debian guest."""

from vmtest.image.store import BootImage, ImageStore

__all__ = ["BootImage", "ImageStore"]
