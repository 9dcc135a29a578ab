"""An X11 guest: a minimal X server showing one xterm, driven by keyboard and OCR.

``xinit`` starts Xorg on vt7 with an xterm (10x20 font, black root window,
no window manager: the keyboard goes to the window under the pointer, which
QEMU puts in the middle of the screen). Run it with ``pytest examples/test_x11.py``.
"""

import pytest

from vmtest import MachineConfig

XSESSION = """\
[Unit]
Description=X server on :0 with an xterm
After=systemd-user-sessions.service

[Service]
Environment=HOME=/root
WorkingDirectory=/root
ExecStart=/usr/bin/xinit /usr/bin/xterm -fn 10x20 -geometry 80x24+0+0 -- :0 vt7 -nolisten tcp -br

[Install]
WantedBy=multi-user.target
"""

x11 = MachineConfig(
    packages=[
        "xserver-xorg-core",
        "xserver-xorg-legacy",
        "xinit",
        "xterm",
        "x11-utils",
        "xfonts-base",
        "xserver-xorg-video-fbdev",
        "xserver-xorg-input-libinput",
    ],
    units={"xsession.service": XSESSION},
)


@pytest.mark.vmtest(nodes={"desktop": x11})
def test_x11(desktop):
    desktop.wait_for_x()
    desktop.wait_for_window(r"xterm")
    assert "xterm" in desktop.get_window_names()
    desktop.wait_for_text(r"root@desktop")  # the shell prompt in the xterm
    desktop.send_chars("echo Hello from X11 $((6 * 7))\n")
    desktop.wait_for_text(r"Hello from X11 42")
    desktop.screenshot("xterm")
