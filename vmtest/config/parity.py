"""Parity with NixOS ``qemu-vm.nix``: the seed options that are not fields of the schema.

Every other seed option is a field of :class:`~vmtest.config.virtualisation.Virtualisation`
(or of its ``qemu`` record) naming it in its declaration; ``docs/options.md``
lists both, and ``tests/unit/test_options_doc.py`` checks that each seed option
is accounted for exactly once.
"""

from __future__ import annotations

STATUSES = ("analogue", "not applicable", "planned")

# seed option -> (status, why)
NOT_DECLARED: dict[str, tuple[str, str]] = {
    "virtualisation.additionalPaths": (
        "analogue",
        "MachineConfig.packages/files: the image store puts them in the image.",
    ),
    "virtualisation.useNixStoreImage": (
        "analogue",
        "every image is a cached disk image (the image store); nothing is shared from the host.",
    ),
    "virtualisation.mountHostNixStore": (
        "not applicable",
        "Debian guests have no Nix store; packages are in the image.",
    ),
    "virtualisation.writableStore": (
        "analogue",
        "the root is always writable: a qcow2 overlay (disk_image) or tmpfs (disk_image=None).",
    ),
    "virtualisation.writableStoreUseTmpfs": ("analogue", "disk_image=None puts all writes in a tmpfs overlay."),
    "virtualisation.host.pkgs": (
        "not applicable",
        "host tools come from the host's Debian packages (./run installs them).",
    ),
}
