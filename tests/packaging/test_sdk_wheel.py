"""The SDK is its own distribution: its wheel, installed alone into a fresh virtual environment
with only the dependencies it declares, serves a worker without any server-side package."""

from __future__ import annotations

import re
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).parent

pytestmark = pytest.mark.slow


def run(*cmd: str | Path, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(c) for c in cmd], cwd=cwd, capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, f"{' '.join(map(str, cmd))} failed:\n{result.stdout}\n{result.stderr}"
    return result


def requirements(wheel: Path) -> list[str]:
    """The Requires-Dist lines of a wheel's metadata (no extras: the SDK declares none)."""
    with zipfile.ZipFile(wheel) as archive:
        metadata = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        lines = archive.read(metadata).decode().splitlines()
    return [line.split(":", 1)[1].strip() for line in lines if line.startswith("Requires-Dist:")]


@pytest.fixture(scope="module")
def sdk_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheels")
    # The dev environment's setuptools builds it: no isolated build environment to download.
    run(
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "--no-build-isolation",
        "-q",
        "-w",
        out,
        "clients/python",
    )
    (wheel,) = out.glob("failhook-*.whl")
    return wheel


def test_the_sdk_wheel_holds_the_sdk_and_no_server(sdk_wheel: Path) -> None:
    with zipfile.ZipFile(sdk_wheel) as archive:
        names = archive.namelist()
    assert "failhook/worker/__init__.py" in names and "failhook/v1/run_pb2.py" in names
    assert "failhook/v1/run_pb2.pyi" in names and "failhook/py.typed" in names
    assert not [n for n in names if n.startswith("failhook_orchestrator")]
    declared = {re.split(r"[^A-Za-z0-9._-]", r, maxsplit=1)[0].lower() for r in requirements(sdk_wheel)}
    assert {"grpcio", "protobuf", "opentelemetry-api", "cryptography", "grpcio-health-checking"} <= declared
    assert not declared & {"sqlalchemy", "aiosqlite", "asyncpg", "alembic", "opentelemetry-sdk", "uvloop"}


def test_the_sdk_alone_imports_and_serves_a_worker(sdk_wheel: Path, tmp_path: Path) -> None:
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    # The SDK without resolving anything, then exactly what it declares (pip's cache is reused).
    run(python, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-deps", sdk_wheel)
    run(python, "-m", "pip", "install", "-q", "--disable-pip-version-check", *requirements(sdk_wheel))
    run(python, "-m", "pip", "check")
    result = run(python, HERE / "sdk_smoke.py", cwd=tmp_path)  # not ROOT: nothing imported from the tree
    assert result.stdout.strip() == 'served step hello="world"'
    assert run(env_dir / "bin" / "failhook", "--help", cwd=tmp_path).stdout.startswith("usage: failhook")
