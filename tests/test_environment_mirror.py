"""The lock pins every pyproject dependency exactly, and environment.yml carries the same versions."""

import re
from pathlib import Path

import tomllib
import yaml

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "requirements" / "cpu.lock"


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[ ;]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _pins(lines) -> dict[str, str]:
    pins = {}
    for line in lines:
        line = line.strip()
        if line and not line.startswith("#"):
            assert "==" in line, f"not an exact pin: {line!r}"
            name, version = line.split("==", 1)
            pins[_name(name)] = version.split(";")[0].strip()
    return pins


def test_lock_pins_every_pyproject_dependency_but_torch():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = {_name(r) for r in project["dependencies"] + project["optional-dependencies"]["dev"]} - {"torch"}
    locked = _pins(LOCK.read_text().splitlines())
    assert wanted <= set(locked), f"not in {LOCK.name}: {wanted - set(locked)} (run ./reproduce.sh lock)"
    assert "torch" not in locked and not any(n.startswith("nvidia-") for n in locked), "TORCH_SPEC installs torch"


def test_environment_yml_has_the_locked_versions_and_torch():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    listed = _pins(pip_section)
    locked = _pins(LOCK.read_text().splitlines())
    assert listed.pop("torch") == "2.13.0"
    assert listed == locked, "environment.yml is out of date: run ./reproduce.sh lock"
