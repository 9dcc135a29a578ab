"""The guest's keyboard: key combinations and typed text, sent as QMP ``send-key`` events."""

from __future__ import annotations

import time

from vmtest.machine import keys
from vmtest.machine.part import Lifecycle


class Keyboard:
    def __init__(self, vm: Lifecycle) -> None:
        self.vm = vm

    def press(self, combo: list[str], delay: float | None) -> None:
        self.vm.monitor().command("send-key", keys=keys.qmp_keys(combo))
        if delay:
            time.sleep(delay)

    def send_key(self, key: str, delay: float | None) -> None:
        self.press(keys.parse_combo(key), delay)

    def send_chars(self, chars: str, delay: float | None) -> None:
        with self.vm.nested(f"sending keys {chars!r}"):
            for combo in keys.text_keys(chars):
                self.press(combo, delay)
