"""The test's view of one VM: the ``Machine`` verbs and the parts behind them (commands, systemd, screen...)."""
