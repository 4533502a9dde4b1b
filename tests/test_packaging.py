"""The wheel a user installs: built from this checkout, installed into a new virtual
environment (its dependencies resolved by pip as a user's would be), and run from there, away
from the source tree: the migrations ship inside the package and migrate a store, and a
generated night runs end to end."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.packaging

ROOT = Path(__file__).resolve().parent.parent
SECRET = "packaging-test-secret-0123456789abcdef"


def _run(*args: object, cwd: Path, env: dict[str, str] | None = None,
         timeout: float = 600) -> subprocess.CompletedProcess[str]:
    res = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True,
                         text=True, timeout=timeout)
    assert res.returncode == 0, f"{args}\n{res.stdout}\n{res.stderr}"
    return res


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", out,
         ROOT, cwd=out)
    (built,) = out.glob("linkage-*.whl")
    return built


def test_the_wheel_carries_the_migrations(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "linkage/_migrations/env.py" in names
    assert "linkage/_migrations/script.py.mako" in names
    shipped = {n.rsplit("/", 1)[1] for n in names
               if n.startswith("linkage/_migrations/versions/") and n.endswith(".py")}
    assert shipped == {p.name for p in (ROOT / "migrations" / "versions").glob("*.py")}
    assert not any(n.startswith(("tests/", "migrations/", "bench/")) for n in names)


def test_an_installed_wheel_migrates_generates_and_runs(wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", venv, cwd=tmp_path)
    bin_ = venv / "bin"
    _run(bin_ / "python", "-m", "pip", "install", "--quiet", wheel, cwd=tmp_path)
    # the installed package, not this checkout: nothing of the source tree on the path
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "VIRTUAL_ENV", "LINKAGE_DB_URL")}
    env["LINKAGE_SECRET"] = SECRET
    where = _run(bin_ / "python", "-c",
                 "import linkage, linkage.store.migrate as m; "
                 "print(linkage.__file__); print(m.script_location())",
                 cwd=tmp_path, env=env).stdout.split()
    site = venv / "lib"
    assert Path(where[0]).is_relative_to(site), where
    assert Path(where[1]).is_relative_to(site) and Path(where[1]).name == "_migrations"

    linkage = bin_ / "linkage"
    db = f"sqlite:///{tmp_path / 'linkage.db'}"
    _run(linkage, "db", "upgrade", "--db", db, cwd=tmp_path, env=env)
    _run(linkage, "db", "check", "--db", db, cwd=tmp_path, env=env)
    _run(linkage, "generate", "--out", tmp_path / "night", "--scenario", "plain",
         "--accounts", "300", "--seed", "1", cwd=tmp_path, env=env)
    res = _run(linkage, "run", "--input", tmp_path / "night", "--db", db, "--quiet",
               cwd=tmp_path, env=env)
    run_id = res.stdout.strip().splitlines()[-1]
    assert run_id == "1", res.stdout
    runs = _run(linkage, "runs", "--db", db, "--json", cwd=tmp_path, env=env)
    assert '"succeeded"' in runs.stdout, runs.stdout
