"""Sphinx configuration of vmtest's API reference (autodoc over the docstrings).

``docs/api/build.sh`` builds it (HTML, and the plain-text rendering committed as ``docs/api.txt``); by hand:

    sphinx-build -W --keep-going -b html docs/api <out>
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

from sphinx.application import Sphinx

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # vmtest from this checkout, installed or not

project = "vmtest"
author = "the vmtest authors"
copyright = "the vmtest authors"  # no year: docs/api.txt is committed and must not change by itself
extensions = ["sphinx.ext.autodoc"]
root_doc = "index"
exclude_patterns = ["_build"]

# Docstrings name flags (--vm-keep-state) and quote shell: no typographic dashes or quotes.
smartquotes = False

# Members in source order (grouped by concern, as in the code); defaults as values, so a timeout shows as
# 900.0 and not as the name of its constant; type hints in the signatures, names without their modules.
autodoc_member_order = "bysource"
autodoc_preserve_defaults = False
autodoc_typehints = "signature"
autodoc_typehints_format = "short"
autodoc_default_options = {"show-inheritance": True}

html_theme = "alabaster"
html_title = "vmtest API reference"


def _printable_defaults(
    app: Sphinx, what: str, name: str, obj: object, options: Any, signature: str | None, return_annotation: str | None
) -> tuple[str | None, str | None]:
    """Show a default that has no source form (a dataclass's ``<factory>``, ``<function no_ini>``) as ``...``.

    Sphinx parses a signature as Python to render it; one such default makes the whole signature fall back
    to raw text (with ``~module.`` prefixes left in).
    """
    if signature:
        signature = re.sub(r"=\s*<[^<>]*>", "=...", signature)
    return signature, return_annotation


def setup(app: Sphinx) -> None:
    app.connect("autodoc-process-signature", _printable_defaults)
