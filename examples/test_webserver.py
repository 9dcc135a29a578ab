"""Two machines on VLAN 1: nginx on ``server``, curl on ``client``.

This is the example the README's main command runs: ``./run example``
(or ``pytest -k webserver``).
"""

import pytest

from vmtest import MachineConfig

server = MachineConfig(
    packages=["nginx-light"],
    services=["nginx.service"],
    files={"/var/www/html/index.html": "hello from server\n"},
)
client = MachineConfig(packages=["curl"])


@pytest.mark.vmtest(nodes={"server": server, "client": client})
def test_webserver(vms, server, client):
    vms.start_all()
    server.wait_for_unit("nginx.service")
    server.wait_for_open_port(80)
    assert client.succeed("curl -sf http://server/") == "hello from server\n"
    # The same over IPv6, by address.
    assert client.succeed("curl -sf 'http://[2001:db8:1::2]/'") == "hello from server\n"
