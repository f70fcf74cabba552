"""Projections you can trust: the time a full drill (and the whole terminal) needs, from what a drill
measured, and how wrong the last projection was.

Method. A drill's time splits into *fixed* parts, which do not grow with the data (selecting the
snapshot; restic's start-up until it writes the first file: repository, index, tree walk and a
sample's include matching; in a full drill, the wait after restic ended for the listing and the
manifest read alongside; starting the throw-away PostgreSQL cluster; probe bookkeeping), and
*scaled* parts, whose seconds per unit of work are measured: restic's restore (fetch, decrypt,
write), the verification of what it wrote, the database load (COPY) and the post-load phase (indexes,
constraints) of the PostgreSQL probe, its SQL checks, the other probes. One unit of work is one
byte, plus per file what a file costs on top of its bytes: in a full restore restic reads the
repository pack by pack and a file costs its create and close (FILE_COST); a sample's files are
scattered over the packs, so each is a ranged read of its own and costs about a request's latency
at the restore's throughput (SCATTERED_FILE_COST; bench/projection.py measured ~2 ms a file at
60 MB/s), less so the larger the sample's share of the tree. The projection of a full drill of a
snapshot of `bytes`/`files` is

    fixed + scaled * work(bytes, files) / work(measured bytes, measured files, of the tree's files)

A sample drill projects its own snapshot's full drill; any drill also projects the next one at the
newest backup's size (a growing database). A scaled phase can hide a fixed part of its own (a probe's
per-statement costs, whatever else the restore phase spends besides restic's bytes; bench/projection.py
measured about 0.3 s of restore phase and 0.04 s of checks that do not grow from 1,000 to 100,000
containers): scaled linearly from a small drill, it inflates the projection of a large one. So when the
target's history holds two whole-tree drills whose work differs at least FIT_RATIO times, each scaled
phase is split by the line through both (fit(): a positive intercept below both measurements is fixed);
else the newest drill scales linearly.

Per size, not a straight line: how a phase grows is itself measured. When the history holds whole-tree
drills of two or more sizes (work at least FIT_RATIO apart; drills within SAME_SIZE are one size, each
phase their median, so one drill beside a busy neighbour does not move it), each scaled phase follows
the curve through those points (curve(), along()): between two measured sizes it is interpolated
(an index build's sort grows a little faster than the rows, parallel index workers a little slower: the
measurements carry it); beyond the largest, a phase that grew faster than the work between the two
largest sizes keeps growing by that power (at most MAX_EXPONENT: n log n is about 1.1 at these sizes);
else it continues the last segment, its slope held within SLOPE_BOUNDS of the largest size's own
seconds per unit of work (a flatter segment between two noisy sizes is noise); below the smallest size
a phase shrinks by the power the two smallest sizes measured, within SLOPE_BOUNDS[0] and 1 (a segment's
intercept, continued ten times down, is mostly noise; and a smaller drill is never faster per unit of
work: what grew faster than the work, a sort, does not below, and fixed parts weigh more), and the fixed phases are the medians of the
measured size nearest to the one projected. With one size only, the newest drill scales as above. Recorded drills keep their shape (`rates`): the curve is
built from them when a projection is made. The *measured error* of a projection is (projected - measured) /
measured, taken from the newest full drill and the drill before it (its projection, fitted with the
drills before it as it would have been, re-evaluated at the full drill's size).

Whole terminal: every target in restore order; targets whose first destination differs restore in
parallel (each destination is its own lane: a repository's bandwidth is shared by the restores reading
it), targets on one destination run one after another, or over `parallelism` lanes per destination when
the site sets restore_parallelism (each target goes to the lane that frees first, in restore order). The
time to service is the longest lane.
"""

from __future__ import annotations

import math

#: Bytes of work one file adds on top of its size in a full restore and in a sample (module docstring).
FILE_COST = 4 << 10
SCATTERED_FILE_COST = 128 << 10
#: Phases that do not grow with the data.
FIXED = ("select", "restore:startup", "restore:alongside", "probe:start", "probe:other")
#: Two whole-tree drills whose work differs at least this many times fit each phase's fixed part (fit()).
FIT_RATIO = 2.0
#: Whole-tree drills whose work is within this factor of each other are one size of the curve (curve()).
SAME_SIZE = 1.25
#: A segment continued beyond the measured sizes keeps its slope within these multiples of the nearest
#: size's own seconds per unit of work (along()).
SLOPE_BOUNDS = (0.5, 1.5)
#: Beyond the largest size a phase that grew faster than the work keeps growing so, at most this power.
MAX_EXPONENT = 1.25
#: Drills of the history the curve is built from (newest first).
CURVE_DRILLS = 20


def work(nbytes: int, files: int, of_files: int | None = None) -> float:
    """Units of work of restoring and verifying `files` files holding `nbytes` bytes: all of a tree, or a
    sample of a tree of `of_files` files. A sampled file is a read of its own unless its neighbour was
    sampled too: the denser the sample, the more it reads like the full tree."""
    density = min(files / of_files, 1.0) if of_files else 1.0
    per_file = SCATTERED_FILE_COST * (1 - density) + FILE_COST * density
    return float(nbytes) + float(files) * per_file


def breakdown(phases: dict[str, float], probes: list[dict], restore_startup: float | None = None,
              restore_alongside: float | None = None) -> dict:
    """Per-phase seconds of a drill. The restore splits into restic's start-up (until its first file
    appeared: fixed), the wait after restic ended for what a full drill reads alongside (the listing, the
    manifest: fixed) and the rest; the probes into the PostgreSQL probe's start (initdb, server start),
    load (data), index (post-load: indexes, constraints) and checks, other probes by kind; what the
    probes phase spent outside any probe is fixed ("probe:other")."""
    out = {p: float(phases.get(p, 0.0)) for p in ("select", "restore", "verify")}
    if restore_startup:
        out["restore:startup"] = min(float(restore_startup), out["restore"])
        out["restore"] -= out["restore:startup"]
    if restore_alongside:
        out["restore:alongside"] = min(float(restore_alongside), out["restore"])
        out["restore"] -= out["restore:alongside"]
    inside = 0.0
    for probe in probes:
        timings = (probe.get("details") or {}).get("timings") or {}
        duration = float(probe.get("duration") or 0.0)
        inside += duration
        if timings:
            for name, seconds in timings.items():
                out[f"probe:{name}"] = out.get(f"probe:{name}", 0.0) + float(seconds)
            rest = duration - sum(float(s) for s in timings.values())
            out["probe:other"] = out.get("probe:other", 0.0) + max(rest, 0.0)
        else:
            out[f"probe:{probe['kind']}"] = out.get(f"probe:{probe['kind']}", 0.0) + duration
    out["probe:other"] = out.get("probe:other", 0.0) + max(float(phases.get("probes", 0.0)) - inside, 0.0)
    return {k: round(v, 3) for k, v in out.items()}


def rates(parts: dict[str, float], nbytes: int, files: int, of_files: int | None = None) -> dict:
    """What a drill measured, in the form a projection needs: fixed seconds and scaled seconds with the
    work they were measured on (`of_files`: the tree's files when this was a sample of it)."""
    fixed = {k: v for k, v in parts.items() if k in FIXED}
    scaled = {k: v for k, v in parts.items() if k not in FIXED}
    return {"fixed": fixed, "scaled": scaled, "work": work(nbytes, files, of_files), "bytes": nbytes,
            "files": files, "of_files": of_files}


def project(measured: dict, nbytes: int, files: int) -> dict:
    """Projected seconds per phase and in total of a full drill of `nbytes`/`files`, from `measured`
    (rates())."""
    factor = work(nbytes, files) / measured["work"] if measured.get("work") else 1.0
    if nbytes >= measured.get("bytes", 0) and files >= measured.get("files", 0):
        factor = max(factor, 1.0)  # a superset of what was measured takes at least as long
    points, w = measured.get("curve") or [], work(nbytes, files)
    phases = {k: v for k, v in measured["fixed"].items() if not points or k not in measured["scaled"]}
    if points:  # the fixed phases as the size nearest to w measured them (medians)
        phases.update(min(points, key=lambda p: abs(math.log(max(w, 1.0) / p["work"])))["fixed"])
    for k, v in measured["scaled"].items():  # a fitted phase has a fixed part too (fit())
        on_curve = along(points, k, w)
        # measured per size: the curve gives the whole phase
        phases[k] = on_curve if on_curve is not None else measured["fixed"].get(k, 0.0) + v * factor
    phases = {k: round(v, 3) for k, v in phases.items()}
    return {"seconds": round(sum(phases.values()), 3), "phases": phases, "bytes": nbytes, "files": files,
            "factor": round(factor, 4)}


def _whole(rates: dict) -> bool:
    """Rates measured on a whole tree (a full drill, or a sample that took every file)."""
    return bool(rates.get("work")) and rates.get("files", 0) >= (rates.get("of_files") or 0)


def fit(newer: dict, older: dict | None) -> dict:
    """`newer` (rates()) with each scaled phase split into a fixed part and a part per unit of work by
    the line through both drills' seconds over their work. Only a line that rises and starts above zero
    splits a phase (its fixed part then below both measurements); else the phase scales linearly, so a
    fit never projects more than linearly. `newer` unchanged unless both are whole trees whose work
    differs FIT_RATIO times."""
    if not older or not _whole(newer) or not _whole(older):
        return newer
    w_new, w_old = newer["work"], older["work"]
    if max(w_new, w_old) < FIT_RATIO * min(w_new, w_old):
        return newer
    fixed, scaled = dict(newer["fixed"]), {}
    for phase, s_new in newer["scaled"].items():
        s_old = older["scaled"].get(phase)
        intercept = 0.0 if s_old is None else (s_old * w_new - s_new * w_old) / (w_new - w_old)
        # beyond the smaller measurement the line falls as the work grows: noise, not a fixed part
        part = intercept if 0.0 < intercept < min(s_new, s_old if s_old is not None else 0.0) else 0.0
        if part > 0:
            fixed[phase] = round(part, 3)
        scaled[phase] = round(s_new - part, 3)
    return {**newer, "fixed": fixed, "scaled": scaled,
            "fitted_with": {"bytes": older.get("bytes"), "files": older.get("files")}}


def basis(drills: list[dict]) -> dict | None:
    """The rates a projection starts from: the newest drill's (`drills` newest first, each a state row's
    `detail` with "rates"), fitted with the newest earlier drill whose work differs FIT_RATIO times, and
    with the curve of the whole-tree drills' sizes when there are two or more (curve())."""
    usable = [d["rates"] for d in drills if d.get("rates")]
    if not usable:
        return None
    newest = usable[0]
    older = next((r for r in usable[1:] if fit(newest, r) is not newest), None)
    based = fit(newest, older)
    points = curve(usable[:CURVE_DRILLS])
    return {**based, "curve": points} if len(points) >= 2 else based


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def curve(usable: list[dict]) -> list[dict]:
    """The sizes the whole-tree drills among `usable` (rates(), newest first) measured, smallest first:
    per size (drills within SAME_SIZE of its newest drill's work) the median work, each scaled phase's
    median seconds (a phase a drill lacks is not counted for it) and each fixed phase's median; of sizes less than FIT_RATIO
    apart only the larger (a segment between close sizes is mostly noise)."""
    whole = [r for r in usable if _whole(r)]
    groups: list[list[dict]] = []
    for rates in whole:
        group = next((g for g in groups if max(g[0]["work"], rates["work"])
                      <= SAME_SIZE * min(g[0]["work"], rates["work"])), None)
        if group is None:
            groups.append([rates])
        else:
            group.append(rates)
    points = []
    for group in groups:
        # a fitted phase's seconds are its fixed part plus its scaled part (fit())
        phases = {k for r in group for k in r["scaled"]}
        seconds = {k: round(_median([r["scaled"][k] + r["fixed"].get(k, 0.0) for r in group if k in r["scaled"]]), 3)
                   for k in phases}
        fixed = {k: round(_median([r["fixed"][k] for r in group if k in r["fixed"]]), 3)
                 for k in {k for r in group for k in r["fixed"] if k in FIXED}}
        points.append({"work": _median([r["work"] for r in group]), "drills": len(group), "scaled": seconds,
                       "fixed": fixed})
    kept: list[dict] = []
    for point in sorted(points, key=lambda p: -p["work"]):  # sizes at least FIT_RATIO apart, the largest kept
        if not kept or point["work"] * FIT_RATIO <= kept[-1]["work"]:
            kept.append(point)
    return kept[::-1]


def along(points: list[dict], phase: str, w: float) -> float | None:
    """Seconds of `phase` at work `w` on the curve (curve()): interpolated between the two measured sizes
    around w; beyond the largest, a phase that grew faster than the work between the two largest sizes
    keeps that power (at most MAX_EXPONENT), any other continues that segment with its slope at least
    SLOPE_BOUNDS[0] of the largest size's seconds per unit of work; below the smallest, the growth between
    the two smallest sizes as a power within SLOPE_BOUNDS[0] and 1. None when fewer than two sizes
    measured the phase."""
    known = [(p["work"], p["scaled"][phase]) for p in points if phase in p["scaled"] and p["work"] > 0]
    if len(known) < 2:
        return None
    if w >= known[-1][0]:
        (w0, s0), (w1, s1) = known[-2], known[-1]
        near_w, near_s = w1, s1
        exponent = math.log(s1 / s0) / math.log(w1 / w0) if s0 > 0 and s1 > 0 else 1.0
        if exponent > 1.0:  # growing faster than the work (a sort): the same growth, bounded
            return round(s1 * (w / w1) ** min(exponent, MAX_EXPONENT), 3)
    elif w <= known[0][0]:  # below the smallest: its growth to the next size, as a bounded power
        (w0, s0), (w1, s1) = known[0], known[1]
        exponent = math.log(s1 / s0) / math.log(w1 / w0) if s0 > 0 and s1 > 0 else 1.0
        # never faster than the work: what grows faster (a sort spilling) does not below, fixed parts do not
        return round(s0 * (max(w, 0.0) / w0) ** min(max(exponent, SLOPE_BOUNDS[0]), 1.0), 3)
    else:
        (w0, s0), (w1, s1) = next((a, b) for a, b in zip(known, known[1:]) if a[0] <= w <= b[0])
        return round(s0 + (s1 - s0) * (w - w0) / (w1 - w0), 3)
    rate = near_s / near_w
    slope = (s1 - s0) / (w1 - w0)
    slope = min(max(slope, SLOPE_BOUNDS[0] * rate), SLOPE_BOUNDS[1] * rate)
    return round(max(near_s + slope * (w - near_w), 0.0), 3)


def error(projected: float, measured: float) -> float | None:
    """(projected - measured) / measured; None without a measurement."""
    return round((projected - measured) / measured, 4) if measured else None


def measured_error(drills: list[dict]) -> dict | None:
    """The newest pair: the newest full drill (`detail` of a state row with "rates" and
    "service_ready_seconds") and the newest drill before it that recorded rates; the earlier one's
    projection at the full drill's size against what the full drill measured. `drills` newest first."""
    usable = [d for d in drills if d.get("rates") and d.get("service_ready_seconds")]
    for i, newer in enumerate(usable):
        if newer.get("kind") != "full":
            continue
        older = usable[i + 1] if i + 1 < len(usable) else None
        if older is None:
            return None
        size = newer["rates"]
        projected = project(basis(usable[i + 1:]), size["bytes"], size["files"])["seconds"]
        measured = float(newer["service_ready_seconds"])
        return {"projected_seconds": projected, "measured_seconds": measured,
                "error": error(projected, measured), "from_kind": older.get("kind"),
                "from_snapshot": older.get("snapshot_id"), "measured_snapshot": newer.get("snapshot_id")}
    return None


def terminal(items: list[dict], parallelism: int | None = None) -> dict:
    """The whole terminal's projected time to service. `items` in restore order, each with target,
    destination and seconds (None: no projection: listed as missing, not counted). Returns seconds (the
    longest lane), the lanes (targets and seconds each) and the targets without a projection."""
    lanes: dict[str, list[dict]] = {}
    missing = []
    per = max(1, parallelism or 1)
    for item in items:
        if item.get("seconds") is None:
            missing.append(item["target"])
            continue
        group = [lane for name, lane in lanes.items() if name.rsplit("#", 1)[0] == item["destination"]]
        if len(group) < per:
            name = f"{item['destination']}#{len(group) + 1}"
            lanes[name] = [item]
            continue
        min(group, key=lambda lane: sum(i["seconds"] for i in lane)).append(item)
    out = [{"lane": name, "targets": [i["target"] for i in lane],
            "seconds": round(sum(i["seconds"] for i in lane), 3)} for name, lane in lanes.items()]
    return {"seconds": max((lane["seconds"] for lane in out), default=0.0), "lanes": out, "missing": missing,
            "rule": (f"targets on different destinations in parallel, {per} at a time per destination"
                     if per > 1 else "targets on different destinations in parallel, one after another on "
                                     "the same destination")}
