"""reproduce.sh: clean usage and errors, --only 2 and 02, every profile, and a failed notebook kept apart."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "reproduce.sh"
PROFILES = sorted(p.stem for p in (ROOT / "configs").glob("*.yaml") if not p.stem.startswith("study_"))


def sh(*args: str, cwd: Path = ROOT, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run(
        ["bash", str(cwd / "reproduce.sh"), *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env
    )


def test_help_is_clean_and_lists_every_profile():
    done = sh("--help")
    assert done.returncode == 0
    assert "set -euo" not in done.stdout and "#!/" not in done.stdout
    assert "./reproduce.sh check" in done.stdout and "--only N" in done.stdout
    assert f"PROFILES: {' '.join(PROFILES)}" in done.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--only"], "--only needs a value"),
        (["--only", "--profile", "smoke"], "--only needs a value"),
        (["--profile"], "--profile needs a value"),
        (["--profile", "nope"], f"unknown profile: nope (profiles: {' '.join(PROFILES)})"),
        (["--profile", "study_long"], "unknown profile: study_long"),  # a study plan, not a profile
        (["--only", "two"], "--only takes a notebook number"),
        (["--reuse", "maybe"], "--reuse must be auto, never or always"),
        (["--frobnicate"], "unknown option: --frobnicate"),
        (["check", "--only", "2"], "check reruns the whole profile"),
    ],
)
def test_bad_arguments_give_one_clear_line(args, message):
    done = sh(*args)
    assert done.returncode == 2
    assert message in done.stderr
    assert "line " not in done.stderr and "unbound" not in done.stderr


def _bootstrapped_venv() -> Path | None:
    """The project's .venv when ./reproduce.sh has installed it for these exact files (else the test is skipped)."""
    venv = ROOT / ".venv"
    stamp = venv / ".finemem-installed"
    if not stamp.is_file():
        return None
    # the same stamp as bootstrap(): $(cat pyproject.toml lock) drops the trailing newlines
    text = ((ROOT / "pyproject.toml").read_text() + (ROOT / "requirements" / "cpu.lock").read_text()).rstrip("\n")
    wanted = hashlib.sha256(f"{text} {os.environ.get('TORCH_SPEC', 'torch==2.13.0')}".encode()).hexdigest()
    return venv if stamp.read_text().strip() == wanted else None


def _notebook(path: Path, source: str) -> None:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell('profile = "default"', metadata={"tags": ["parameters"]})]
    nb.cells.append(nbformat.v4.new_code_cell(source))
    nbformat.write(nb, path)


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A copy of the project whose notebooks are two tiny ones: 01 succeeds, 02 raises."""
    venv = _bootstrapped_venv()
    if venv is None:
        pytest.skip("needs the .venv that ./reproduce.sh bootstraps (run ./reproduce.sh test)")
    root = tmp_path_factory.mktemp("project")
    for name in ("reproduce.sh", "pyproject.toml"):
        shutil.copy(ROOT / name, root / name)
    for name in ("requirements", "configs", "finemem_lib"):
        shutil.copytree(ROOT / name, root / name, ignore=shutil.ignore_patterns("__pycache__"))
    (root / ".venv").symlink_to(venv)
    (root / "notebooks").mkdir()
    _notebook(root / "notebooks" / "01_ok.ipynb", "print('fine', profile)")
    _notebook(root / "notebooks" / "02_fail.ipynb", "raise RuntimeError('this notebook fails')")
    return root


@pytest.mark.parametrize("only", ["2", pytest.param("02", marks=pytest.mark.slow)])
def test_a_failed_notebook_goes_apart_and_the_committed_copy_stays(project, only):
    committed = project / "results" / "smoke" / "notebooks" / "02_fail.ipynb"
    committed.parent.mkdir(parents=True, exist_ok=True)
    committed.write_text("the committed copy")
    done = sh("--profile", "smoke", "--only", only, cwd=project)
    assert done.returncode == 1, done.stderr
    failed = project / "results" / "smoke" / "failed" / "02_fail.ipynb"
    assert f"FAILED: 02_fail.ipynb; the executed notebook is at {failed}" in done.stderr
    assert "this notebook fails" in failed.read_text()
    assert committed.read_text() == "the committed copy"
    assert "01_ok" not in done.stdout, "--only ran another notebook"


@pytest.mark.slow
def test_only_1_runs_notebook_01_into_the_profile_folder(project):
    done = sh("--profile", "smoke", "--only", "1", cwd=project)
    assert done.returncode == 0, done.stderr
    executed = nbformat.read(project / "results" / "smoke" / "notebooks" / "01_ok.ipynb", as_version=4)
    assert "fine smoke" in executed.cells[-1].outputs[0]["text"]
    assert not list((project / "results" / "smoke" / "notebooks").glob(".running-*"))
    assert not (project / "results" / "notebooks").exists(), "only the default profile writes to results/ itself"


@pytest.mark.parametrize("profile", [p for p in PROFILES if p != "paper"])
def test_every_profile_in_configs_is_accepted(project, profile):
    done = sh("--profile", profile, "--only", "99", cwd=project)
    assert done.returncode == 1 and "no notebook matched --only 99" in done.stderr, done.stderr
