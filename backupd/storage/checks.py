"""One audit check outcome; shared by the audit, canary and readback modules."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass
class Check:
    """`ok` False with severity "error" is a finding (exit 1); "warning" is reported only."""

    name: str
    ok: bool
    detail: str
    severity: str = "error"

    def to_dict(self) -> dict:
        return asdict(self)


def passed(name: str, detail: str) -> Check:
    return Check(name, True, detail, "info")
