"""Test networks: VLAN switches, the address plan, and the ``Driver`` that owns a test's machines."""
