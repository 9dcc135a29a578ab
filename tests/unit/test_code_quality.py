"""Code quality: lint, format, types, import layers and the API reference, each by its tool.

Every tool runs as a subprocess from this virtualenv (the ``dev`` extra installs them all) and a failure
shows the tool's own output. What to run by hand:

* lint and format: ``.venv/bin/ruff check --fix vmtest tests examples benchmarks conftest.py docs/api/conf.py`` and
  ``.venv/bin/ruff format vmtest tests examples benchmarks conftest.py docs/api/conf.py``
* types: ``.venv/bin/mypy`` (settings in ``[tool.mypy]`` of pyproject.toml)
* import layers and cycles: ``.venv/bin/lint-imports`` (contracts in ``[tool.importlinter]``)
* API reference: ``docs/api/build.sh`` rebuilds the HTML (docs/api/_build/html) and the committed
  plain-text rendering ``docs/api.txt``
"""

from __future__ import annotations

import difflib
import inspect
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

import vmtest
from vmtest import Machine

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent  # the virtualenv's bin directory
PYTHON_PATHS = ["vmtest", "tests", "examples", "benchmarks", "conftest.py", "docs/api/conf.py"]
API_TXT = REPO / "docs" / "api.txt"
REGENERATE = "docs/api/build.sh"


def run(tool: str, *args: str | Path) -> subprocess.CompletedProcess[str]:
    exe = BIN / tool
    if not exe.exists():
        pytest.fail(f"{tool} is not installed in {BIN}: pip install -e '.[dev]'", pytrace=False)
    return subprocess.run([str(exe), *map(str, args)], cwd=REPO, capture_output=True, text=True, timeout=600)


def passes(tool: str, *args: str | Path) -> None:
    """Run ``tool``; fail the test with its output unless it exits 0."""
    proc = run(tool, *args)
    if proc.returncode != 0:
        pytest.fail(
            f"{' '.join([tool, *map(str, args)])} exited with status {proc.returncode}:\n{proc.stdout}{proc.stderr}",
            pytrace=False,
        )


def test_ruff_check() -> None:
    passes("ruff", "check", *PYTHON_PATHS)


def test_ruff_format() -> None:
    passes("ruff", "format", "--check", *PYTHON_PATHS)


def test_mypy() -> None:
    passes("mypy")  # files and settings from [tool.mypy]; its cache (.mypy_cache) makes later runs fast


def test_import_layers_and_cycles() -> None:
    passes("lint-imports", "--no-cache", "--no-logo")


# -- the API reference ----------------------------------------------------------------------------


@dataclass
class ApiBuild:
    html: subprocess.CompletedProcess[str]
    text: subprocess.CompletedProcess[str]
    text_file: Path

    def check(self, builder: str) -> None:
        proc = self.html if builder == "html" else self.text
        if proc.returncode != 0:
            pytest.fail(
                f"sphinx-build -W -b {builder} docs/api failed (status {proc.returncode}):\n{proc.stdout}{proc.stderr}",
                pytrace=False,
            )

    def reference(self) -> str:
        self.check("text")
        return self.text_file.read_text()


@pytest.fixture(scope="module")
def api_build(tmp_path_factory: pytest.TempPathFactory) -> ApiBuild:
    """The reference built as HTML, then as text from the same (fresh) environment, warnings as errors."""
    out = tmp_path_factory.mktemp("api")
    common = ["-W", "--keep-going", "-q", "-d", out / "doctrees"]
    html = run("sphinx-build", *common, "-E", "-b", "html", REPO / "docs" / "api", out / "html")
    text = run("sphinx-build", *common, "-b", "text", REPO / "docs" / "api", out / "text")
    return ApiBuild(html, text, out / "text" / "index.txt")


def test_api_reference_builds_without_warnings(api_build: ApiBuild) -> None:
    api_build.check("html")


def test_api_txt_is_current(api_build: ApiBuild) -> None:
    fresh = api_build.reference()
    committed = API_TXT.read_text() if API_TXT.exists() else ""
    if fresh != committed:
        diff = difflib.unified_diff(
            committed.splitlines(), fresh.splitlines(), "docs/api.txt (committed)", "docs/api.txt (from the code)", n=1
        )
        shown = "\n".join(list(diff)[:60])
        pytest.fail(f"docs/api.txt is out of date; regenerate it with {REGENERATE}\n{shown}", pytrace=False)


def public_machine_members() -> list[str]:
    return [name for name, _ in inspect.getmembers(Machine) if not name.startswith("_")]


def test_every_public_machine_method_is_documented(api_build: ApiBuild) -> None:
    members = public_machine_members()
    assert len(members) > 50  # methods and properties, not an empty list from a broken lookup
    text = api_build.reference()
    undocumented = [name for name in members if not (inspect.getattr_static(Machine, name).__doc__ or "").strip()]
    missing = [name for name in members if not re.search(rf"^   (property )?{name}\b[(:\n]", text, re.MULTILINE)]
    assert not undocumented, f"Machine members without a docstring: {undocumented}"
    assert not missing, f"Machine members missing from the API reference (docs/api/index.rst): {missing}"


def test_every_exported_name_is_in_the_reference(api_build: ApiBuild) -> None:
    text = api_build.reference()
    missing = [
        name for name in vmtest.__all__ if not re.search(rf"^(class|exception) vmtest\.{name}\b", text, re.MULTILINE)
    ]
    assert "class vmtest.config.settings.Settings(" in text
    assert not missing, f"names of vmtest.__all__ missing from the API reference (docs/api/index.rst): {missing}"
