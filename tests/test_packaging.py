"""What pyproject.toml declares is what CI tests: the oldest-versions environment pins the lower bounds."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _lower_bounds() -> dict[str, str]:
    if sys.version_info < (3, 11):
        pytest.skip("tomllib is 3.11+")
    import tomllib

    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    return {m[1]: m[2] for m in (re.fullmatch(r"([A-Za-z0-9_.-]+)>=([0-9.]+)", d) for d in deps) if m}


def test_oldest_environment_pins_the_declared_lower_bounds():
    bounds = _lower_bounds()
    pins = dict(
        re.fullmatch(r"([A-Za-z0-9_.-]+)==([0-9.]+)", line).groups()  # type: ignore[union-attr]
        for line in (ROOT / ".ci" / "oldest.txt").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    )
    assert pins, "no pins in .ci/oldest.txt"
    for name, version in pins.items():
        # ">=1.24" is tested with a 1.24.x release: the pin starts with the declared bound.
        declared = bounds[name].split(".")
        assert version.split(".")[: len(declared)] == declared, (
            f"{name}: pyproject says >={bounds[name]}, .ci/oldest.txt tests {version}"
        )


def test_declared_python_versions_match_ci():
    text = (ROOT / "pyproject.toml").read_text()
    declared = re.findall(r"Programming Language :: Python :: (3\.\d+)", text)
    assert declared[0] == "3.10" and re.search(r'requires-python = ">=3.10"', text)
    ci = (ROOT / ".ci" / "run").read_text()
    # The oldest and the newest declared interpreters are the ones CI finds and runs.
    assert f"find_python {declared[0]}" in ci and f"find_python {declared[-1]}" in ci
