"""docs/configuration.md is generated from `Settings`; these fail when it is not current."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from pydantic import Field

from sidechat._config_doc import DOC_PATH, render
from sidechat.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
REGENERATE = "python -m sidechat._config_doc > docs/configuration.md"


def test_the_reference_is_current() -> None:
    assert DOC_PATH == ROOT / "docs" / "configuration.md"
    assert DOC_PATH.read_text(encoding="utf-8") == render(), f"stale; run: {REGENERATE}"


def test_every_setting_has_a_description() -> None:
    missing = [name for name, field in Settings.model_fields.items() if not field.description]
    assert not missing, f"add Field(description=...) in sidechat/settings.py for {missing}"


def test_rows_name_the_flag_the_variable_and_the_default() -> None:
    text = render()
    row = next(line for line in text.splitlines() if line.startswith("| `cors_origins` |"))
    assert "`--cors-origin`" in row and "`SIDECHAT_CORS_ORIGINS`" in row and '`["*"]`' in row
    row = next(line for line in text.splitlines() if line.startswith("| `max_active_turns` |"))
    assert "| – |" in row and "integer, ≥ 1" in row and "`2000`" in row
    assert "1. a command-line flag" in text and "4. the default." in text


def test_a_new_setting_gets_a_row() -> None:
    class More(Settings):
        shiny: int = Field(default=3, ge=2, description="A setting added later.")

    row = next(line for line in render(More).splitlines() if line.startswith("| `shiny` |"))
    assert row == (
        "| `shiny` | – | `SIDECHAT_SHINY` | integer, ≥ 2 | `3` | A setting added later. |"
    )


def test_check_mode() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "sidechat._config_doc", "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
