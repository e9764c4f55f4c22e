"""What an ingest run did: counts, and every page skipped with the reason."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import click

__all__ = ["Report"]


@dataclass
class Report:
    counts: Counter[str] = field(default_factory=Counter)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    echo: bool = False

    def skip(self, what: str, why: str) -> None:
        self.skipped.append((what, why))
        self._say(f"warning: skipped {what}: {why}")

    def refuse(self, what: str, why: str) -> None:
        """A URL not fetched for safety (another host, a private address): counted apart."""
        self.counts["refused"] += 1
        self.skip(what, f"refused: {why}")

    def warn(self, message: str) -> None:
        self.warnings.append(message)
        self._say(f"warning: {message}")

    def note(self, message: str) -> None:
        self.notes.append(message)

    def _say(self, line: str) -> None:
        if self.echo:
            click.echo(line, err=True)

    def summary(self) -> str:
        c = self.counts
        return (
            f"{c['added']} added, {c['updated']} updated, {c['removed']} removed, "
            f"{c['unchanged']} unchanged, {len(self.skipped)} skipped, {c['chunks']} chunks, "
            f"{c['embedded']} embedded" + (f", {c['refused']} refused" if c["refused"] else "")
        )
