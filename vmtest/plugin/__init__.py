"""The pytest plugin (entry point ``vmtest.plugin.hooks``) and its failure reports."""
