"""The lock file `make run`/`make test` install from agrees with pyproject.toml's ranges."""

from __future__ import annotations

import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]


def _locked() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, sep, version = line.partition("==")
            assert sep, f"requirements.lock: {line!r} is not an exact pin"
            pins[canonicalize_name(name)] = version
    return pins


def test_every_declared_dependency_is_locked_inside_its_range() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        declared += extra
    locked = _locked()
    checked = 0
    for spec in declared:
        req = Requirement(spec)
        if canonicalize_name(req.name) == "sidechat":
            continue  # the project's own extras
        assert req.specifier, f"{spec!r}: declare a compatible range, not a bare name"
        assert not any(s.operator == "==" for s in req.specifier), f"{spec!r}: a range, not a pin"
        name = canonicalize_name(req.name)
        assert name in locked, f"{req.name} is declared but not in requirements.lock"
        assert req.specifier.contains(locked[name]), f"{req.name}=={locked[name]} is outside {spec}"
        checked += 1
    assert checked >= 30
