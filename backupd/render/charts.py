"""Inline SVG charts for the HTML reports: hand-written, no scripts, no external references, so a report
opens offline in any browser and prints as it shows.

- `retention_chart`: a target's restore points (one lane per destination) on a time axis, the
  `min_history` window shaded, flagged (suspect) generations marked apart.
- `drill_chart`: drill time-to-ready per drill on a time axis against the RTO (horizontal line) and its
  80 % WARN threshold (dashed line), bars coloured by verdict.

Both return an `<svg>` element (well-formed XML) whose marks carry `class` and `data-*` attributes so
tests can find them. Every text from the data is escaped.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from html import escape

from backupd.drill.verdict import WARN_FRACTION
from backupd.policy.durations import format_duration

WIDTH = 760
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 120, 24, 28, 46
#: Verdict -> fill colour (PASS green, WARN amber, FAIL red, SUSPECT purple; anything else grey).
VERDICT_COLOURS = {"PASS": "#2e7d32", "WARN": "#f9a825", "FAIL": "#c62828", "SUSPECT": "#7b1fa2"}
OTHER_COLOUR = "#757575"
RTO_COLOUR = "#1565c0"
WARN_LINE_COLOUR = "#ef6c00"
WINDOW_FILL = "#d6e6f5"
POINT_COLOUR = "#263238"
FLAGGED_COLOUR = "#d50000"
AXIS_COLOUR = "#444444"
FONT = "font-family=\"'Noto Sans CJK JP','Hiragino Sans',sans-serif\" font-size=\"11\""
#: Tick steps a time axis may use, smallest first.
TIME_STEPS = (timedelta(hours=1), timedelta(hours=3), timedelta(hours=6), timedelta(hours=12), timedelta(days=1),
              timedelta(days=2), timedelta(days=7), timedelta(days=14), timedelta(days=30), timedelta(days=91),
              timedelta(days=182), timedelta(days=365))
MAX_TICKS = 8
MIN_BAR = 3
#: Tick steps a seconds axis may use.
VALUE_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)


def _a(value) -> str:
    """Escape text for an attribute or element body."""
    return escape(str(value), quote=True)


def parse_time(value: str | datetime) -> datetime:
    """An ISO 8601 string or datetime -> aware datetime (naive = UTC)."""
    when = value if isinstance(value, datetime) else datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def number(value) -> float | None:
    """A number from evidence data, where non-integral floats are stored as their repr (canonical.py)."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def colour(verdict: str | None) -> str:
    return VERDICT_COLOURS.get(str(verdict or "").upper(), OTHER_COLOUR)


@dataclass(frozen=True)
class TimeScale:
    """Linear map from [start, end] to [left, right] pixels."""

    start: datetime
    end: datetime
    left: float = MARGIN_LEFT
    right: float = WIDTH - MARGIN_RIGHT

    def x(self, when: datetime) -> float:
        span = (self.end - self.start).total_seconds() or 1.0
        return round(self.left + (when - self.start).total_seconds() / span * (self.right - self.left), 2)

    def ticks(self) -> list[datetime]:
        """Tick times at the smallest step that gives at most MAX_TICKS, aligned to UTC midnight/hours."""
        span = self.end - self.start
        step = next((s for s in TIME_STEPS if span / s <= MAX_TICKS), None)
        if step is None:  # longer than 8 years: whole years
            step = timedelta(days=365 * (span.days // (365 * MAX_TICKS) + 1))
        base = self.start.astimezone(timezone.utc).replace(minute=0, second=0, microsecond=0)
        if step >= timedelta(days=1):
            base = base.replace(hour=0)
        tick = base
        while tick < self.start:
            tick += step
        out = []
        while tick <= self.end:
            out.append(tick)
            tick += step
        return out

    def label(self, when: datetime) -> str:
        when = when.astimezone(timezone.utc)
        if self.end - self.start <= timedelta(days=2):
            return when.strftime("%m-%d %H:%M")
        return when.strftime("%Y-%m-%d")


def time_range(times: list[datetime], floor: timedelta = timedelta(hours=2)) -> tuple[datetime, datetime]:
    """A padded [start, end] around times (at least `floor` wide)."""
    lo, hi = min(times), max(times)
    if hi - lo < floor:
        mid = lo + (hi - lo) / 2
        lo, hi = mid - floor / 2, mid + floor / 2
    pad = (hi - lo) * 0.04
    return lo - pad, hi + pad


def _time_axis(scale: TimeScale, y: float) -> list[str]:
    y = round(y)  # a whole pixel row, crisp: the axis keeps its exact colour when rasterised
    out = [f'<line class="time-axis" x1="{scale.left}" y1="{y}" x2="{scale.right}" y2="{y}" '
           f'stroke="{AXIS_COLOUR}" stroke-width="2" shape-rendering="crispEdges"/>']
    for tick in scale.ticks():
        x = scale.x(tick)
        out.append(f'<line class="tick" x1="{x}" y1="{y}" x2="{x}" y2="{y + 5}" stroke="{AXIS_COLOUR}"/>'
                   f'<text class="tick-label" x="{x}" y="{y + 17}" text-anchor="middle" {FONT} '
                   f'data-time="{_a(tick.isoformat())}">{_a(scale.label(tick))}</text>')
    out.append(f'<text x="{scale.right}" y="{y + 33}" text-anchor="end" {FONT} fill="#555">'
               f'{_a("日時 (UTC) / time (UTC)")}</text>')
    return out


def _svg(height: float, label: str, body: list[str]) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="{WIDTH}" height="{height}" '
            f'viewBox="0 0 {WIDTH} {height}" role="img" aria-label="{_a(label)}"><title>{_a(label)}</title>'
            f'<rect x="0" y="0" width="{WIDTH}" height="{height}" fill="#ffffff"/>' + "".join(body) + "</svg>")


def _legend(items: list[tuple[str, str]], y: float) -> str:
    """One row of (swatch svg at x=0..12, label) items."""
    out, x = [], MARGIN_LEFT
    for swatch, text in items:
        out.append(f'<g transform="translate({x},{y})">{swatch}<text x="16" y="10" {FONT}>{_a(text)}</text></g>')
        x += round(26 + 6.5 * len(text))  # whole pixels: swatches keep their exact colour
    return "".join(out)


def retention_chart(target: str, lanes: list[tuple[str, list[dict]]], min_history: timedelta,
                    now: datetime) -> str:
    """Restore points of `target`: lanes = [(destination, [{"time", "id", "suspect"}])]; the window
    [now - min_history, now] shaded. A flagged generation is a red cross, a restore point a dot."""
    lanes = lanes or [("-", [])]
    times = [parse_time(p["time"]) for _, pts in lanes for p in pts] + [now - min_history, now]
    start, _ = time_range(times)
    scale = TimeScale(start, now + (now - start) * 0.02)
    lane_h, top = 26, MARGIN_TOP + 14
    axis_y = top + lane_h * len(lanes) + 6
    height = axis_y + MARGIN_BOTTOM + 22
    wx0 = scale.x(now - min_history)
    body = [f'<text x="{MARGIN_LEFT}" y="16" {FONT} font-weight="bold">'
            f'{_a(target)} — {_a("復元点と最低保持期間 / restore points and min_history")}</text>',
            f'<rect class="min-history-window" x="{wx0}" y="{top}" width="{round(scale.x(now) - wx0, 2)}" '
            f'height="{axis_y - top}" fill="{WINDOW_FILL}" data-start="{_a((now - min_history).isoformat())}"/>',
            f'<text x="{wx0 + 4}" y="{top - 4}" {FONT} fill="{RTO_COLOUR}">'
            f'{_a(f"min_history {duration_label(min_history.total_seconds())}")}</text>',
            f'<line class="now" x1="{scale.x(now)}" y1="{top}" x2="{scale.x(now)}" y2="{axis_y}" '
            f'stroke="{AXIS_COLOUR}" stroke-dasharray="2,2"/>']
    for i, (dest, points) in enumerate(lanes):
        y = top + lane_h * i + lane_h / 2
        body.append(f'<text class="lane" x="{MARGIN_LEFT - 8}" y="{y + 4}" text-anchor="end" {FONT}>'
                    f'{_a(dest)}</text><line x1="{scale.left}" y1="{y}" x2="{scale.right}" y2="{y}" '
                    f'stroke="#cfd8dc"/>')
        for p in points:
            body.append(_restore_point(scale, y, p))
        if not points:
            body.append(f'<text x="{scale.left + 6}" y="{y + 4}" {FONT} fill="#555">'
                        f'{_a("復元点なし / no restore points")}</text>')
    body += _time_axis(scale, axis_y)
    body.append(_legend([
        (f'<rect width="12" height="12" fill="{WINDOW_FILL}"/>', "最低保持期間 / min_history window"),
        (f'<circle cx="6" cy="6" r="4" fill="{POINT_COLOUR}"/>', "復元点 / restore point"),
        (_cross(6, 6, FLAGGED_COLOUR), "要注意世代 / flagged (suspect)")], axis_y + MARGIN_BOTTOM - 6))
    return _svg(height, f"{target}: restore points and min_history", body)


def _cross(x: float, y: float, fill: str) -> str:
    return (f'<path d="M{x - 5} {y - 5}L{x + 5} {y + 5}M{x - 5} {y + 5}L{x + 5} {y - 5}" '
            f'stroke="{fill}" stroke-width="2.5"/>')


def _restore_point(scale: TimeScale, y: float, point: dict) -> str:
    when = parse_time(point["time"])
    x = scale.x(when)
    tip = f"{point.get('id', '')[:8]} {when.isoformat()}" + (" (flagged)" if point.get("suspect") else "")
    if point.get("suspect"):
        return (f'<g class="flagged-point" data-x="{x}" data-time="{_a(when.isoformat())}"><title>{_a(tip)}'
                f'</title>{_cross(x, y, FLAGGED_COLOUR)}</g>')
    return (f'<circle class="restore-point" cx="{x}" cy="{y}" r="4" fill="{POINT_COLOUR}" '
            f'data-time="{_a(when.isoformat())}"><title>{_a(tip)}</title></circle>')


def value_ticks(highest: float) -> tuple[float, float]:
    """(step, top): a round tick step giving at most 6 ticks, and the axis top (a step multiple >= highest)."""
    step = next((s for s in VALUE_STEPS if highest / s <= 6), None) or 86400 * (highest // (86400 * 6) + 1)
    return step, step * -(-highest // step)


def duration_label(seconds: float) -> str:
    """A policy duration as the policy writes it (6w, 2h, 90m); else seconds_label."""
    if seconds >= 1 and float(seconds).is_integer():
        return format_duration(timedelta(seconds=seconds))
    return seconds_label(seconds)


def seconds_label(seconds: float) -> str:
    """90 -> '1.5m', 7200 -> '2h', 30 days -> '30d'."""
    if seconds >= 86400 and seconds % 86400 == 0:
        return f"{seconds / 86400:.0f}d"
    for unit, size in (("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.4g}{unit}"
    return f"{seconds:.4g}s"


@dataclass(frozen=True)
class ValueScale:
    """Linear map from [0, top] seconds to [bottom, top_px] pixels."""

    top: float
    bottom_px: float
    top_px: float

    def y(self, seconds: float) -> float:
        return round(self.bottom_px - seconds / (self.top or 1.0) * (self.bottom_px - self.top_px), 2)


def drill_chart(target: str, drills: list[dict], rto_seconds: float | None) -> str:
    """Time-to-ready of each drill ({"time", "ready_seconds", "verdict", "seq"?}) as a bar at its time,
    coloured by verdict, with the RTO line and the 80 % WARN line; a drill with no measured time is a
    grey-outlined marker on the baseline."""
    plot_top, plot_h = MARGIN_TOP + 8, 170
    axis_y = plot_top + plot_h
    height = axis_y + MARGIN_BOTTOM + 22
    readies = [r for r in (number(d.get("ready_seconds")) for d in drills) if r is not None]
    step, vtop = value_ticks(max([*readies, (rto_seconds or 0) * 1.1, 1.0]))
    values = ValueScale(vtop, axis_y, plot_top)
    times = [parse_time(d["time"]) for d in drills] or [datetime.now(timezone.utc)]
    scale = TimeScale(*time_range(times))
    body = [f'<text x="{MARGIN_LEFT}" y="16" {FONT} font-weight="bold">'
            f'{_a(target)} — {_a("復旧訓練の復旧所要時間と RTO / drill time-to-ready vs RTO")}</text>',
            f'<line class="value-axis" x1="{scale.left}" y1="{plot_top}" x2="{scale.left}" y2="{axis_y}" '
            f'stroke="{AXIS_COLOUR}"/>']
    for i in range(int(vtop // step) + 1):
        sec = step * i
        y = values.y(sec)
        body.append(f'<line x1="{scale.left - 4}" y1="{y}" x2="{scale.right}" y2="{y}" stroke="#eceff1"/>'
                    f'<text x="{scale.left - 7}" y="{y + 4}" text-anchor="end" {FONT}>{_a(seconds_label(sec))}'
                    f'</text>')
    for d in drills:
        body.append(_drill_mark(scale, values, d))
    if rto_seconds:
        body += _threshold("rto-line", values.y(rto_seconds), RTO_COLOUR, "",
                           f"RTO {duration_label(rto_seconds)}", scale, scale.right - 2, "end")
        body += _threshold("warn-line", values.y(rto_seconds * WARN_FRACTION), WARN_LINE_COLOUR, "6,4",
                           f"{WARN_FRACTION:.0%} RTO (WARN)", scale, scale.left + 4, "start")
    else:
        body.append(f'<text x="{scale.right}" y="{plot_top + 10}" text-anchor="end" {FONT} fill="#555">'
                    f'{_a("RTO 未設定 / no RTO set")}</text>')
    body += _time_axis(scale, axis_y)
    body.append(_legend([(f'<rect width="12" height="12" fill="{c}"/>', v) for v, c in VERDICT_COLOURS.items()]
                        + [(f'<rect y="5" width="12" height="2" fill="{RTO_COLOUR}"/>', "RTO"),
                           (f'<rect y="5" width="12" height="2" fill="{WARN_LINE_COLOUR}"/>',
                            f"{WARN_FRACTION:.0%} RTO (WARN)")], axis_y + MARGIN_BOTTOM - 6))
    return _svg(height, f"{target}: drill time-to-ready vs RTO", body)


def _threshold(css: str, y: float, stroke: str, dash: str, text: str, scale: TimeScale, text_x: float,
               anchor: str) -> list[str]:
    # crispEdges + an even width on a whole pixel row: the line keeps its exact colour when rasterised
    y = round(y)
    dashes = f' stroke-dasharray="{dash}"' if dash else ""
    return [f'<line class="{css}" x1="{scale.left}" y1="{y}" x2="{scale.right}" y2="{y}" stroke="{stroke}" '
            f'stroke-width="2" shape-rendering="crispEdges"{dashes}/>',
            f'<text x="{text_x}" y="{y - 4}" text-anchor="{anchor}" {FONT} fill="{stroke}">{_a(text)}</text>']


def _drill_mark(scale: TimeScale, values: ValueScale, drill: dict) -> str:
    when = parse_time(drill["time"])
    x, verdict = scale.x(when), str(drill.get("verdict") or "?")
    ready = number(drill.get("ready_seconds"))
    tip = f"#{drill.get('seq', '')} {when.isoformat()} {verdict}" + (
        f" {seconds_label(ready)}" if ready is not None else " (no time measured)")
    data = f'data-time="{_a(when.isoformat())}" data-verdict="{_a(verdict)}" fill="{colour(verdict)}"'
    if ready is None:
        return (f'<circle class="drill-unmeasured" cx="{x}" cy="{values.bottom_px - 5}" r="4" {data} '
                f'stroke="{OTHER_COLOUR}"><title>{_a(tip)}</title></circle>')
    # at least MIN_BAR px high: a drill far below its RTO stays visible
    y = min(values.y(ready), values.bottom_px - MIN_BAR)
    return (f'<rect class="drill-bar" x="{round(x - 4, 2)}" y="{y}" width="8" '
            f'height="{round(values.bottom_px - y, 2)}" data-x="{x}" data-y="{values.y(ready)}" {data}>'
            f'<title>{_a(tip)}</title></rect>')
