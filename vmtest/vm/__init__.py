"""One QEMU process: its command line, its launch and its channels (QMP, serial, backdoor, agent)."""
