"""``failhook-orchestrator serve`` with a bad configuration exits 2 naming the key, no traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BAD = {
    "unknown target key": ('[targets."pay:50052"]\nsever_name = "pay.example.com"\n', "sever_name"),
    "unknown role": ('[roles]\n"spiffe://x/ops" = ["superuser"]\n', "unknown role"),
    "bad synchronous": ('[database]\nsqlite_synchronous = "OFF"\n', "database.sqlite_synchronous"),
}


@pytest.mark.parametrize(("toml", "named"), BAD.values(), ids=BAD.keys())
def test_a_bad_config_file_exits_2_naming_the_key(tmp_path: Path, toml: str, named: str) -> None:
    config = tmp_path / "failhook.toml"
    config.write_text(toml)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FAILHOOK_", "OTEL_"))}
    done = subprocess.run(
        [sys.executable, "-m", "failhook_orchestrator.cli", "serve", "--insecure", "--config", str(config)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert named in done.stderr and "Traceback" not in done.stderr
    assert done.stderr.startswith("failhook-orchestrator: config file")
