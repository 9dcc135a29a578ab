"""examples/ci: valid YAML whose jobs use only the README's commands (section "Sharded CI")."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
CI = REPO / "examples" / "ci"
README = (REPO / "README.md").read_text()
# the README's command forms (its "Sharded CI" section and "Two commands")
COMMANDS = (
    "./run setup",
    "vmtest cache key tests",
    "vmtest cache export tests -o",
    "vmtest cache import",
    "pytest tests --splits",
)


def commands(script: str) -> list[str]:
    """The vmtest/pytest/./run invocations in a shell snippet."""
    return [m.group(0) for m in re.finditer(r"(\./run|vmtest|pytest) [^;&|\n)]*", script)]


def check_uses_readme_commands(scripts: list[str]) -> list[str]:
    found = [c for s in scripts for c in commands(s)]
    for command in found:
        form = next((f for f in COMMANDS if command.startswith(f)), None)
        assert form is not None, f"{command!r} is not one of the README's commands"
        assert form in README, f"the README does not show {form!r}"
    return found


def test_github_actions_workflow() -> None:
    doc: dict[Any, Any] = yaml.safe_load((CI / "github-actions.yml").read_text())
    jobs = doc["jobs"]
    groups = jobs["test"]["strategy"]["matrix"]["group"]
    assert groups == list(range(1, len(groups) + 1))
    steps = jobs["images"]["steps"] + jobs["test"]["steps"]
    runs = [s["run"] for s in steps if "run" in s]
    found = check_uses_readme_commands(runs)
    assert any(c.startswith(f"pytest tests --splits {len(groups)} --group") for c in found)
    caches = [s for s in steps if str(s.get("uses", "")).startswith("actions/cache")]
    assert caches and all(
        "steps.key.outputs.key" in s["with"]["key"] or "needs.images.outputs.key" in s["with"]["key"] for s in caches
    )
    assert any("vmtest cache key tests" in r for r in runs if "key=" in r)


def test_gitlab_ci_file() -> None:
    doc: dict[str, Any] = yaml.safe_load((CI / "gitlab-ci.yml").read_text())
    assert doc["test"]["parallel"] == 4
    scripts = doc["default"]["before_script"] + doc["images"]["script"] + doc["test"]["script"]
    found = check_uses_readme_commands(scripts)
    assert any('--splits "$CI_NODE_TOTAL" --group "$CI_NODE_INDEX"' in c for c in found)
    assert doc["images"]["cache"]["paths"] == ["vmtest-cache/"]
