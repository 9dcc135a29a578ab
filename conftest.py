"""Repository-wide pytest set-up: the vmtest plugin is loaded by its entry point."""
