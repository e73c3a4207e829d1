"""Helpers of the configuration tests: write a TOML file, load it with insecure defaults."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from failhook_orchestrator.config import Settings, load_settings

Load = Callable[..., Settings]


@pytest.fixture
def load(tmp_path: Path) -> Load:
    """``load(toml, flags=..., env=...)``: the settings a file (plus flags and env) gives."""

    def run(
        toml: str = "", *, flags: Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None
    ) -> Settings:
        path = tmp_path / "failhook.toml"
        path.write_text(toml)
        return load_settings({"insecure": True, **(flags or {})}, env=dict(env or {}), config_file=path)

    return run
