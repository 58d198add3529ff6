"""The pins live in requirements.txt; environment.yml must repeat them exactly, and pyproject must read them."""

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _requirements() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, sep, version = line.partition("==")
            assert sep, f"requirements.txt pins exact versions only, got {line!r}"
            pins[name.lower().replace("_", "-")] = version
    return pins


def _environment_pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "environment.yml").read_text().splitlines():
        match = re.fullmatch(r"\s*-\s+([A-Za-z0-9_.\-]+)==(\S+)\s*", line)
        if match:
            pins[match.group(1).lower().replace("_", "-")] = match.group(2)
    return pins


def test_environment_yml_pins_equal_requirements():
    assert _environment_pins() == _requirements()


def test_every_pin_is_exact_and_torch_is_pinned():
    pins = _requirements()
    assert pins["torch"] == "2.13.0"
    assert all(re.fullmatch(r"[0-9][0-9A-Za-z.\-+]*", v) for v in pins.values())


def test_pyproject_reads_its_dependencies_from_requirements():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "dependencies" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["dependencies"]["file"] == ["requirements.txt"]


def test_installed_versions_match_the_pins():
    from importlib.metadata import PackageNotFoundError, version

    for name, pinned in _requirements().items():
        try:
            installed = version(name)
        except PackageNotFoundError:  # pragma: no cover - a broken environment
            raise AssertionError(f"{name} is pinned but not installed: run `make venv`")
        assert installed.split("+")[0] == pinned, f"{name}: installed {installed}, pinned {pinned}"


def test_the_jit_warm_up_runs_every_solver_path_make_venv_compiles():
    # `make venv` runs `python -m hdm.jit`; a change of the solver's API that breaks it fails here, not in CI's venv
    from hdm import jit

    assert jit.compile_kernels() >= 0.0
