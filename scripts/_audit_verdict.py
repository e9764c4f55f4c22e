"""The verdict of scripts/audit.sh on one audit tool's JSON report: exit 0 (nothing known), 1 (a
vulnerability not on the ignore list: the report is printed) or 2 (no report: the vulnerability
database could not be read; printed as a notice, never a failure).

Usage: _audit_verdict.py pip|npm REPORT.json [IGNORED-ID ...]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

__all__ = ["main", "npm_findings", "pip_findings"]


def pip_findings(report: dict[str, Any], ignored: set[str]) -> tuple[list[str], list[str], int]:
    """(findings, skipped, audited) from `pip-audit -f json`."""
    findings, skipped, audited = [], [], 0
    for dep in report.get("dependencies", []):
        if "skip_reason" in dep:
            skipped.append(f"{dep['name']} {dep.get('version', '')}".strip())
            continue
        audited += 1
        for vuln in dep.get("vulns", []):
            ids = {vuln.get("id", ""), *vuln.get("aliases", [])}
            if ids & ignored:
                continue
            fixed = ", ".join(vuln.get("fix_versions", [])) or "no fixed version"
            summary = (vuln.get("description") or "").strip().split("\n")[0][:160]
            findings.append(
                f"{dep['name']} {dep['version']}: {vuln.get('id')} (fixed in: {fixed}) {summary}"
            )
    return findings, skipped, audited


def npm_findings(report: dict[str, Any], ignored: set[str]) -> list[str]:
    """Findings from `npm audit --json` (v2 report); an advisory is named by its GHSA id."""
    findings = []
    for name, vuln in sorted(report.get("vulnerabilities", {}).items()):
        for via in vuln.get("via", []):
            if not isinstance(via, dict):
                continue  # "via": another package of the list, reported under its own name
            ghsa = str(via.get("url", "")).rsplit("/", 1)[-1]
            if ghsa in ignored or str(via.get("source")) in ignored:
                continue
            fix = "yes" if vuln.get("fixAvailable") else "no"
            title = via.get("title", "")
            findings.append(
                f"{name} {via.get('range', '')}: {via.get('severity')} {ghsa} {title}"
                f" (fix available: {fix})"
            )
    return findings


def main(argv: list[str]) -> int:
    kind, path, *ignore = argv
    ignored = set(ignore)
    try:
        report = json.loads(Path(path).read_text("utf-8") or "null")
    except (OSError, ValueError):
        report = None
    if kind == "pip":
        if not isinstance(report, dict) or "dependencies" not in report:
            print("notice: pip-audit produced no report (database unreachable?): skipped")
            return 2
        findings, skipped, audited = pip_findings(report, ignored)
        if audited == 0:
            print("notice: pip-audit could look up none of the dependencies: skipped")
            return 2
        if skipped:
            print(f"notice: pip-audit could not look up {len(skipped)}: {', '.join(skipped)}")
        print(f"pip-audit: {audited} locked packages checked")
    else:
        if not isinstance(report, dict) or "auditReportVersion" not in report:
            message = report.get("message", "") if isinstance(report, dict) else ""
            print(f"notice: npm audit got no report ({message or 'no answer'}): skipped")
            return 2
        findings = npm_findings(report, ignored)
        total = report.get("metadata", {}).get("dependencies", {}).get("total", "?")
        print(f"npm audit: {total} widget packages checked")
    for finding in findings:
        print(f"VULNERABLE: {finding}")
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
