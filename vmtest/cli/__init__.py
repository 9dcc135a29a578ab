"""The ``vmtest`` command line."""
