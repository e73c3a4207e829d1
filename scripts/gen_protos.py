"""Regenerate the Python code of the contract from ``proto/``.

The output goes to ``clients/python/failhook/v1/``, the path of the proto package, so the
generated imports (``from failhook.v1 import run_pb2``) need no rewriting. Message classes come
from grpcio-tools' bundled protoc, type stubs (with the proto comments as docstrings) from
mypy-protobuf. Both generators are pinned in pyproject.toml so the output is reproducible and CI
can fail on any drift (``make check-generated``).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import grpc_tools

ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "proto"
OUT_ROOT = ROOT / "clients" / "python"
PACKAGE_DIR = OUT_ROOT / "failhook" / "v1"
INIT_TEXT = '"""Generated code of the failhook.v1 contract (``make generate``); never edit by hand."""\n'


def main() -> int:
    protos = sorted(str(p.relative_to(PROTO_ROOT)) for p in (PROTO_ROOT / "failhook" / "v1").glob("*.proto"))
    if PACKAGE_DIR.exists():
        shutil.rmtree(PACKAGE_DIR)
    PACKAGE_DIR.mkdir(parents=True)
    bin_dir = Path(sys.executable).parent
    well_known = Path(grpc_tools.__file__).parent / "_proto"
    cmd = [
        sys.executable,
        "-m",
        "grpc_tools.protoc",
        f"--proto_path={PROTO_ROOT}",
        f"--proto_path={well_known}",
        f"--python_out={OUT_ROOT}",
        f"--grpc_python_out={OUT_ROOT}",
        f"--plugin=protoc-gen-mypy={bin_dir / 'protoc-gen-mypy'}",
        f"--plugin=protoc-gen-mypy_grpc={bin_dir / 'protoc-gen-mypy_grpc'}",
        f"--mypy_out=readable_stubs:{OUT_ROOT}",
        f"--mypy_grpc_out=readable_stubs:{OUT_ROOT}",
        *protos,
    ]
    subprocess.run(cmd, check=True, cwd=ROOT)
    (PACKAGE_DIR / "__init__.py").write_text(INIT_TEXT)
    (PACKAGE_DIR / "py.typed").write_text("")
    print(f"generated {len(protos)} proto files into {PACKAGE_DIR.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
