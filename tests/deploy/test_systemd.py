"""deploy/sidechat.service: systemd accepts it without a warning, rates its sandbox, and its
command line and limits fit sidechat."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests._servers import ROOT

UNIT = ROOT / "deploy" / "sidechat.service"
INSTALLED = "/opt/sidechat/bin/sidechat"


def settings(text: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key.strip(), []).append(value.strip())
    return found


def local_unit(tmp_path: Path) -> Path:
    """The unit with ExecStart pointing at this checkout's sidechat, which verify requires to
    exist."""
    text = UNIT.read_text()
    assert text.count(f"ExecStart={INSTALLED} ") == 1
    path = tmp_path / "sidechat.service"
    path.write_text(text.replace(INSTALLED, str(Path(sys.executable).parent / "sidechat")))
    return path


def test_systemd_accepts_the_unit(tmp_path: Path) -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed (Debian: apt-get install systemd)")
    unit = local_unit(tmp_path)
    verify = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(unit)],
        capture_output=True, text=True, cwd=tmp_path,
    )  # fmt: skip
    # An unknown or misspelt directive is only a warning to systemd: refuse any output. The
    # threshold is in tenths: 20 means an exposure level above 2.0 (of 10) fails.
    assert verify.returncode == 0 and verify.stderr == "", verify.stderr
    security = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--threshold=20", str(unit)],
        capture_output=True, text=True, cwd=tmp_path,
    )  # fmt: skip
    assert security.returncode == 0, security.stdout[-2000:] + security.stderr
    level = re.search(r"Overall exposure level for sidechat.service: ([\d.]+) OK", security.stdout)
    assert level is not None, security.stdout[-500:]
    assert float(level.group(1)) <= 2.0, "exposure levels run from 0 (sandboxed) to 10"


def test_the_unit_fits_sidechat() -> None:
    unit = settings(UNIT.read_text())
    assert unit["LimitNOFILE"] == ["65536"]
    assert unit["Restart"] == ["on-failure"]
    assert unit["User"] == ["sidechat"]
    assert unit["EnvironmentFile"][0].endswith("/etc/sidechat/sidechat.env")
    assert unit["NoNewPrivileges"] == ["yes"] and unit["ProtectSystem"] == ["strict"]
    # systemd must wait longer than sidechat's own shutdown grace before killing it.
    # (uvicorn's timeout_graceful_shutdown in cli.py, or a GRACE constant where it moved to.)
    code = "".join(path.read_text() for path in sorted((ROOT / "sidechat").glob("*.py")))
    grace = re.search(r"timeout_graceful_shutdown=(\d+)|\nGRACE = (\d+)", code)
    assert grace is not None, "sidechat's shutdown grace was not found"
    stop = int(unit["TimeoutStopSec"][0].removesuffix("s"))
    assert stop > int(grace.group(1) or grace.group(2)) + 5
    # Every flag of the command line is one `sidechat serve` knows.
    argv = shlex.split(unit["ExecStart"][0])
    assert argv[:2] == [INSTALLED, "serve"]
    known = subprocess.run(
        [sys.executable, "-m", "sidechat", "serve", "--help"], capture_output=True, text=True
    ).stdout
    for flag in (a for a in argv if a.startswith("--")):
        assert f"{flag} " in known, f"sidechat serve has no {flag}"
