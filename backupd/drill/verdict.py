"""The drill verdict: time to service-ready against the target's RTO, and the projection of a full
restore from a sample's measured throughput."""

from __future__ import annotations

from datetime import timedelta

WARN_FRACTION = 0.8


def project_full(phases: dict[str, float], sample_files: int, sample_bytes: int,
                 total_files: int, total_bytes: int) -> float:
    """Seconds a full drill would take: selection and probes as measured, restore+verify scaled by the
    larger of the byte and the file ratio (small files cost per file, big ones per byte)."""
    moved = phases.get("restore", 0.0) + phases.get("verify", 0.0)
    ratio = max(total_bytes / sample_bytes if sample_bytes else 1.0,
                total_files / sample_files if sample_files else 1.0, 1.0)
    return round(phases.get("select", 0.0) + moved * ratio + phases.get("probes", 0.0), 3)


def judge(service_ready: float, rto: timedelta | None, problems: list[str]) -> tuple[str, str]:
    """(verdict, reason): FAIL on any problem or above the RTO, WARN at >= 80% of it, else PASS."""
    if problems:
        return "FAIL", "; ".join(problems[:5])
    if rto is None:
        return "PASS", f"ready in {service_ready:.1f}s; the target sets no RTO"
    budget = rto.total_seconds()
    share = service_ready / budget if budget else float("inf")
    text = f"ready in {service_ready:.1f}s = {share:.1%} of the RTO ({budget:.0f}s)"
    if share > 1:
        return "FAIL", text + ": over the allowable cargo-handling downtime"
    if share >= WARN_FRACTION:
        return "WARN", text + f": at or above {WARN_FRACTION:.0%} of the budget"
    return "PASS", text
