"""Report charts as images (SVG and PNG, one drawing): calls per interval, service level
against each queue's goal, ASA, AHT and abandonment, one line per queue; on request the
callers' satisfaction (surveys).

matplotlib with its Agg backend draws both formats without a display or a browser
(README, dependencies). Drawing is CPU work of 50–200 ms: the routes run it in a thread.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal

Metric = Literal["all", "calls", "sl", "asa", "aht", "abandonment", "csat_speed",
                 "csat_attitude", "csat_resolved", "csat_response"]
METRICS: dict[str, tuple[str, str, float]] = {
    # key: (title, row field, scale to show)
    "calls": ("Calls offered per interval", "offered", 1.0),
    "sl": ("Service level (%)", "service_level", 100.0),
    "asa": ("ASA, average speed of answer (s)", "asa_s", 1.0),
    "aht": ("AHT, average handling time (s)", "aht_s", 1.0),
    "abandonment": ("Abandonment rate (%)", "abandonment_rate", 100.0),
    "csat_speed": ("Satisfaction: response speed (5 fast, 3, 1 slow)", "csat_speed", 1.0),
    "csat_attitude": ("Satisfaction: attitude (5 good, 3, 1 poor)", "csat_attitude", 1.0),
    "csat_resolved": ("Satisfaction: resolved (% yes)", "csat_resolved_rate", 100.0),
    "csat_response": ("Survey response rate (%)", "csat_response_rate", 100.0),
}
SCORES = ("csat_speed", "csat_attitude")  # on the 5/3/1 scale
PERCENTS = ("sl", "abandonment", "csat_resolved", "csat_response")
DEFAULT = ("calls", "sl", "asa", "aht", "abandonment")  # metric "all"
ImageFormat = Literal["svg", "png"]


def _series(rows: Sequence[dict[str, Any]], field: str, scale: float,
            ) -> dict[str, tuple[list[datetime], list[float]]]:
    out: dict[str, tuple[list[datetime], list[float]]] = {}
    for row in rows:
        value = row.get(field)
        if value is None:
            continue
        xs, ys = out.setdefault(row["queue"], ([], []))
        xs.append(datetime.fromisoformat(row["interval_start"]))
        ys.append(float(value) * scale)
    return out


def render(rows: Sequence[dict[str, Any]], *, metric: Metric = "all", fmt: ImageFormat = "svg",
           title: str = "", goals: dict[str, float] | None = None) -> bytes:
    """`rows`: a report's queue rows. `goals`: each queue's service-level goal (a share),
    drawn as a dashed line on the service-level chart."""
    # Imported on first use: matplotlib is a second or more of every start-up otherwise.
    import matplotlib

    matplotlib.use("Agg")  # before pyplot: never look for a display
    import matplotlib.dates as mdates
    from matplotlib.figure import Figure

    keys = list(DEFAULT) if metric == "all" else [metric]
    fig = Figure(figsize=(10, 2.6 * len(keys) + 0.6), dpi=100, layout="constrained")
    axes = fig.subplots(len(keys), 1, squeeze=False, sharex=True)[:, 0]
    tz = None
    for ax, key in zip(axes, keys, strict=True):
        name, field, scale = METRICS[key]
        series = _series(rows, field, scale)
        for queue, (xs, ys) in sorted(series.items()):
            tz = tz or xs[0].tzinfo
            line = ax.plot(xs, ys, marker="o", markersize=3, linewidth=1.5, label=queue)
            if key == "sl" and goals and queue in goals:
                ax.axhline(goals[queue] * 100, linestyle="--", linewidth=1,
                           color=line[0].get_color())
        ax.set_title(name, loc="left", fontsize=10)
        ax.grid(True, alpha=0.3)
        if key in PERCENTS:
            ax.set_ylim(0, 105)
        elif key in SCORES:
            ax.set_ylim(0, 5.25)
        else:
            ax.set_ylim(bottom=0)
        if not series:
            ax.text(0.5, 0.5, "no surveys" if key.startswith("csat") else "no calls",
                    transform=ax.transAxes, ha="center", va="center", color="gray")
        elif key == keys[0]:
            ax.legend(loc="upper right", fontsize=8, ncols=min(len(series), 6))
    if tz is not None:
        locator = mdates.AutoDateLocator(tz=tz)  # type: ignore[no-untyped-call]
        axes[-1].xaxis.set_major_locator(locator)
        axes[-1].xaxis.set_major_formatter(
            mdates.ConciseDateFormatter(locator, tz=tz))  # type: ignore[no-untyped-call]
    if title:
        fig.suptitle(title, fontsize=11)
    out = io.BytesIO()
    # no creation date in the file: the same report draws the same bytes
    meta = {"Date": None} if fmt == "svg" else {"Software": None}
    fig.savefig(out, format=fmt, metadata=meta)
    return out.getvalue()


MEDIA = {"svg": "image/svg+xml", "png": "image/png"}

__all__ = ["MEDIA", "METRICS", "Metric", "render"]
