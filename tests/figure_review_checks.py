"""What the reviewer of issue 35 sent back, as checks with matplotlib's own renderer: titles without data, rater or
size; names broken at a hyphen; a fit line above 100% with an unexplained band; "Safety" on a plain accuracy; count
axes at 2.5; a column of a heatmap outside its colour scale without a key; labels sharing a connector or stacked;
connectors across markers or error bars. :func:`reviewer_flaws` runs them all with the layout checks of
``figure_checks.py``."""

from __future__ import annotations

import re

import numpy as np
from matplotlib.collections import LineCollection, PolyCollection
from matplotlib.text import Annotation

from figure_checks import (clipped_points, connectors_through_labels, covered_points, crossing_connectors, cut_bands,
                           data_points, detached_labels, drawn_texts, labels_on_bars, negative_zeros,
                           overlapping_texts, point_labels, text_box, texts_outside, tick_values)


def titles(fig) -> str:
    """Every title a reader sees first: the figure's, each axes', each legend's (one string, lines joined)."""
    fig.canvas.draw()
    parts = [fig._suptitle.get_text() if fig._suptitle is not None else ""]
    parts += [ax.get_title(loc) for ax in fig.axes for loc in ("center", "left", "right")]
    parts += [lg.get_title().get_text() for lg in [*fig.legends, *(ax.get_legend() for ax in fig.axes)]
              if lg is not None]
    return " ".join(p.replace("\n", " ") for p in parts if p)


def untitled(fig, *must: str) -> list[str]:
    """Which of ``must`` (the data's name, the rater, "N pairs") the figure's titles do not name."""
    text = titles(fig)
    return [m for m in must if m not in text]


def broken_names(fig) -> list[str]:
    """Texts with a line ending in a hyphen: a name cut in two ("backbone all-" / "MiniLM-L6-v2")."""
    return [t.get_text() for t in drawn_texts(fig) if re.search(r"[-\u2010]\n", t.get_text())]


def fit_lines_off_scale(fig) -> list[str]:
    """Dashed lines (fits) on a percentage axis that go above 100% or below 0%."""
    out = []
    for ax in fig.axes:
        if "%" not in ax.get_ylabel() and "%" not in ax.get_xlabel():
            continue
        for ln in ax.lines:
            y = np.asarray(ln.get_ydata(), float)
            if ln.get_linestyle() == "--" and len(y) > 1 and (np.nanmax(y) > 100 + 1e-9 or np.nanmin(y) < -1e-9):
                out.append(f"fit in {ax.get_title()!r} spans {np.nanmin(y):.1f}..{np.nanmax(y):.1f}%")
    return out


def _legend_texts(fig) -> list[str]:
    legends = [lg for lg in [*fig.legends, *(ax.get_legend() for ax in fig.axes)] if lg is not None]
    return [t.get_text() for lg in legends for t in lg.get_texts()]


def unexplained_bands(fig) -> list[str]:
    """Axes with a filled band (a fit's or a curve's interval) and no legend entry saying what a band is."""
    said = any(re.search(r"band|CI|interval", t) for t in _legend_texts(fig))
    return [ax.get_title() for ax in fig.axes if not said and any(
        isinstance(c, PolyCollection) and not isinstance(c, LineCollection) for c in ax.collections)]


def safety_words(fig) -> list[str]:
    """Texts that call a number "Safety" (RewardBench's weighted score): wrong on a plain accuracy of an own set."""
    return [t.get_text() for t in drawn_texts(fig) if "Safety" in t.get_text()]


def fractional_count_ticks(fig) -> list[str]:
    """Tick labels that are not whole numbers on an axis of counts (its label, or the figure's, says count)."""
    sup = fig._supylabel.get_text() if getattr(fig, "_supylabel", None) is not None else ""
    out = []
    for ax in fig.axes:
        if "count" in (ax.get_ylabel() + sup).lower():
            out += [f"{ax.get_title()!r}: {v:g}" for v in tick_values(ax, "y") if v != round(v)]
    return out


def unkeyed_colours(fig) -> list[str]:
    """Coloured cells (a heatmap's QuadMesh) that no colour bar maps and no legend keys."""
    from matplotlib.collections import QuadMesh

    keyed = bool(_legend_texts(fig))
    bars = {c.colorbar.ax for ax in fig.axes for c in ax.collections if getattr(c, "colorbar", None) is not None}
    return [ax.get_title() or "heatmap" for ax in fig.axes if ax not in bars for c in ax.collections
            if isinstance(c, QuadMesh) and c.get_visible() and c.colorbar is None
            and np.ma.count(c.get_array()) > 0 and not keyed]  # a colour bar's own mesh is the key itself


def shared_connectors(fig, tol: float = 1.0) -> list[tuple[str, str]]:
    """Pairs of point labels whose connectors end on one point, or run on top of each other (within ``tol``
    display pixels over more than a third of the shorter one): a reader cannot tell whose line is whose."""
    fig.canvas.draw()
    out = []
    for ax in fig.axes:
        segs = [(a.get_text(), _sampled(a)) for a in point_labels(ax) if a.arrow_patch is not None]
        for i in range(len(segs)):
            for j in range(i + 1, len(segs)):
                (s, p), (t, q) = segs[i], segs[j]
                near = np.hypot(*(p[:, None, :] - q[None, :, :]).transpose(2, 0, 1)).min(axis=1) < tol
                if np.hypot(*(p[-1] - q[-1])) < tol or near.mean() > 1 / 3:
                    out.append((s, t))
    return out


def _sampled(a: Annotation, n: int = 48) -> np.ndarray:
    ends = a.arrow_patch.get_transform().transform(a.arrow_patch.get_path().vertices)[[0, -1]]
    return ends[0] + np.linspace(0, 1, n)[:, None] * (ends[1] - ends[0])


def stacked_labels(fig, air: float = 2.0) -> list[tuple[str, str]]:
    """Pairs of point labels closer than ``air`` display pixels: two names stacked read as one label with two
    connectors."""
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    out = []
    for ax in fig.axes:
        boxes = [(a.get_text(), text_box(a, r)) for a in point_labels(ax)]
        out += [(s, t) for i, (s, a) in enumerate(boxes) for t, b in boxes[i + 1:] if a.padded(air).overlaps(b)]
    return out


def connectors_over_markers(fig) -> list[str]:
    """Connectors passing over a marker other than their own point's (the marker's radius, from its size)."""
    fig.canvas.draw()
    out = []
    for ax in fig.axes:
        pts = data_points(ax)
        radius = max([ln.get_markersize() for ln in ax.lines if ln.get_marker() not in (None, "None", "")] or [0])
        radius = radius / 2 * fig.dpi / 72
        for a in point_labels(ax):
            if a.arrow_patch is None:
                continue
            xy, own = _sampled(a), ax.transData.transform(np.asarray(a.xy, float))
            others = pts[np.hypot(*(pts - own).T) > 1.0]
            if len(others) and (np.hypot(*(xy[:, None, :] - others[None]).transpose(2, 0, 1)) < radius).any():
                out.append(a.get_text())
    return out


def connectors_across_bars(fig) -> list[str]:
    """Connectors crossing an error bar other than their own point's (matplotlib's path intersection); a bar
    through their own point's marker reads as its own. A panel the placer marked ``crossing_unavoidable`` (it found
    no places without: points closer than their bars are wide, :func:`encore.report.labels.label_rules`) is left
    out; :func:`unavoidable_crossings` names those panels."""
    fig.canvas.draw()
    out = []
    for ax in fig.axes:
        if getattr(ax, "crossing_unavoidable", False):
            continue
        bars = [c.get_transform().transform_path(p) for c in ax.collections if isinstance(c, LineCollection)
                for p in c.get_paths()]
        radius = max([ln.get_markersize() for ln in ax.lines if ln.get_marker() not in (None, "None", "")] or [0])
        radius = radius / 2 * fig.dpi / 72
        for a in point_labels(ax):
            if a.arrow_patch is None:
                continue
            own = ax.transData.transform(np.asarray(a.xy, float))
            path = a.arrow_patch.get_transform().transform_path(a.arrow_patch.get_path())
            for bar in bars:
                v = bar.vertices
                if abs(v[:, 0] - own[0]).max() <= radius and v[:, 1].min() - 1 <= own[1] <= v[:, 1].max() + 1:
                    continue  # its own point's bar (or one through its marker), where the connector ends
                if path.intersects_path(bar, filled=False):
                    out.append(a.get_text())
                    break
    return out


def unavoidable_crossings(fig) -> list[str]:
    """Panels whose labels could not avoid crossing an error bar (the placer tried every set without first)."""
    return [ax.get_title().split("\n")[0] for ax in fig.axes if getattr(ax, "crossing_unavoidable", False)]


def reviewer_flaws(fig, *must: str, rewardbench: bool = True) -> dict[str, list]:
    """Every check of this module that finds something, by name (empty: a figure a reviewer would not send back).
    ``must``: what the titles must name (data, rater, "N pairs"); ``rewardbench``: whether "Safety" may appear."""
    found = {"untitled": untitled(fig, *must), "broken names": broken_names(fig),
             "fit off scale": fit_lines_off_scale(fig), "unexplained band": unexplained_bands(fig),
             "fractional count ticks": fractional_count_ticks(fig), "unkeyed colours": unkeyed_colours(fig),
             "shared connectors": shared_connectors(fig), "stacked labels": stacked_labels(fig),
             "connectors over markers": connectors_over_markers(fig),
             "connectors across bars": connectors_across_bars(fig), "overlapping texts": overlapping_texts(fig),
             "texts outside": texts_outside(fig), "covered points": covered_points(fig),
             "crossing connectors": crossing_connectors(fig), "connectors through labels": connectors_through_labels(fig),
             "labels on bars": labels_on_bars(fig), "clipped points": clipped_points(fig), "cut bands": cut_bands(fig),
             "detached labels": detached_labels(fig), "negative zeros": negative_zeros(fig)}
    if not rewardbench:
        found["Safety on a plain accuracy"] = safety_words(fig)
    return {k: v for k, v in found.items() if v}
