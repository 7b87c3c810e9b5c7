"""Layout checks with matplotlib's own renderer: the text objects a figure really draws, whether any two overlap,
whether any leaves the figure, whether a legend or a label covers a data point, and whether each point label is
visibly attached to its own point. An annotation's box here is its text's box (its connector is checked apart).
What a reviewer sent back (issue 35) is checked by ``figure_review_checks.py`` (:func:`reviewer_flaws`)."""

from __future__ import annotations

import re

import numpy as np
from matplotlib.collections import LineCollection, PathCollection, PolyCollection
from matplotlib.lines import Line2D
from matplotlib.patches import FancyArrowPatch
from matplotlib.text import Annotation, Text


def drawn_texts(fig) -> list[Text]:
    """Visible, non-empty texts, keeping only the tick labels of ticks inside their axis' view (the rest exist but
    are not drawn)."""
    fig.canvas.draw()
    ticks, shown = set(), []
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            lo, hi = sorted(axis.get_view_interval())
            for tick in axis.get_major_ticks() + axis.get_minor_ticks():
                for lab in (tick.label1, tick.label2):
                    ticks.add(id(lab))
                    inside = lo - 1e-9 * max(1, abs(hi)) <= tick.get_loc() <= hi + 1e-9 * max(1, abs(hi))
                    if inside and lab.get_visible() and lab.get_text().strip() and tick.get_visible():
                        shown.append(lab)
    other = [t for t in fig.findobj(Text) if id(t) not in ticks and t.get_visible() and t.get_text().strip()]
    return shown + other


def text_box(t: Text, renderer=None):
    """Display box of the text alone (an annotation's own extent also spans its connector)."""
    return Text.get_window_extent(t, renderer)


def _boxes(fig, texts):
    r = fig.canvas.get_renderer()
    return [text_box(t, r) for t in texts]


def overlapping_texts(fig, tol: float = 0.5) -> list[tuple[str, str]]:
    texts = drawn_texts(fig)
    boxes = _boxes(fig, texts)
    out = []
    for i in range(len(texts)):
        for j in range(i + 1, len(texts)):
            a, b = boxes[i].padded(-tol), boxes[j].padded(-tol)
            if a.overlaps(b):
                out.append((texts[i].get_text(), texts[j].get_text()))
    return out


def texts_outside(fig, tol: float = 1.0) -> list[str]:
    texts = drawn_texts(fig)
    fb = fig.bbox.padded(tol)
    return [t.get_text() for t, b in zip(texts, _boxes(fig, texts)) if not (fb.contains(b.x0, b.y0)
                                                                            and fb.contains(b.x1, b.y1))]


def data_points(ax) -> np.ndarray:
    """Display coordinates of the markers and line vertices an axes draws (no axis lines, no reference lines)."""
    pts = []
    for art in ax.get_children():
        if isinstance(art, Line2D) and art.get_visible() and len(art.get_xdata()) > 1 and art.get_marker() not in (
                None, "None", "", " ", "_", "|"):  # error-bar caps are not data points
            xy = np.column_stack([art.get_xdata(), art.get_ydata()]).astype(float)
            pts.append(ax.transData.transform(xy))
        elif isinstance(art, PathCollection) and art.get_visible() and len(art.get_offsets()):
            pts.append(art.get_offset_transform().transform(art.get_offsets()))
    return np.concatenate(pts) if pts else np.zeros((0, 2))


def covered_points(fig) -> list[str]:
    """Data points under a legend (figure or axes) or under a text drawn inside an axes (labels, annotations)."""
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    points = np.concatenate([data_points(ax) for ax in fig.axes] or [np.zeros((0, 2))])
    legends = [lg for lg in [*fig.legends, *(ax.get_legend() for ax in fig.axes)] if lg is not None]
    out = []
    for lg in legends:
        b = lg.get_window_extent(r)
        if any(b.contains(*p) for p in points):
            out.append("legend")
    for ax in fig.axes:
        pts = data_points(ax)
        for t in ax.texts:
            b = text_box(t, r).padded(-1)
            if t.get_visible() and t.get_text().strip() and any(b.contains(*p) for p in pts):
                out.append(t.get_text())
    return out


def _gap(box, p) -> float:
    return float(np.hypot(max(box.x0 - p[0], 0, p[0] - box.x1), max(box.y0 - p[1], 0, p[1] - box.y1)))


def point_labels(ax) -> list[Annotation]:
    """The annotations of data points: text and an ``xy`` in data coordinates."""
    return [t for t in ax.texts if isinstance(t, Annotation) and t.get_text().strip() and t.xycoords == "data"]


def detached_labels(fig, tol: float = 3.0) -> list[str]:
    """What a reader could not attach: a connector (an annotation's arrow) whose end is more than ``tol`` display
    pixels from a data point or from its own annotation's point; a point label whose point is not a data point; a
    label without connector that is nearer another point than its own."""
    fig.canvas.draw()
    out = []
    for ax in fig.axes:
        pts = data_points(ax)
        labels = point_labels(ax)
        arrows = [(a.arrow_patch, a) for a in ax.texts if isinstance(a, Annotation) and a.arrow_patch is not None]
        arrows += [(p, None) for p in ax.get_children() if isinstance(p, FancyArrowPatch)]  # connectors drawn on their own
        for patch, a in arrows:
            end = patch.get_transform().transform(patch.get_path().vertices)[-1]
            own = ax.transData.transform(np.asarray(a.xy, float)) if a is not None and a.xycoords == "data" else end
            if not len(pts) or np.hypot(*(pts - end).T).min() > tol or np.hypot(*(own - end)) > tol:
                name = a.get_text() if a is not None else "a label"
                out.append(f"connector of {name!r} ends in empty space")
        for a in labels:
            own = ax.transData.transform(np.asarray(a.xy, float))
            if not len(pts) or np.hypot(*(pts - own).T).min() > tol:
                out.append(f"label {a.get_text()!r} names no data point")
            elif a.arrow_patch is None:
                box = text_box(a)
                if _gap(box, own) > min(_gap(box, p) for p in pts) + 1e-6:
                    out.append(f"label {a.get_text()!r} is nearer another point and has no connector")
    return out


def _connectors(ax) -> list[tuple[str, object]]:
    """(label text, drawn connector path in display coordinates) of every annotation with a connector."""
    return [(a.get_text(), a.arrow_patch.get_transform().transform_path(a.arrow_patch.get_path()))
            for a in ax.texts if isinstance(a, Annotation) and a.arrow_patch is not None]


def crossing_connectors(fig) -> list[tuple[str, str]]:
    """Pairs of labels whose connectors cross (matplotlib's own path intersection)."""
    fig.canvas.draw()
    out = []
    for ax in fig.axes:
        paths = _connectors(ax)
        for i in range(len(paths)):
            for j in range(i + 1, len(paths)):
                if paths[i][1].intersects_path(paths[j][1], filled=False):
                    out.append((paths[i][0], paths[j][0]))
    return out


def connectors_through_labels(fig) -> list[tuple[str, str]]:
    """(label, other label) where the label's drawn connector runs through the other's text: a reader follows the
    line to the wrong name (found in the SmolLM2 study's figure: matplotlib starts a connector at the middle of its
    text box unless told otherwise, not where the placer had checked it)."""
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    out = []
    for ax in fig.axes:
        boxes = [(a, text_box(a, r).padded(-0.5)) for a in point_labels(ax)]
        for a in ax.texts:
            if not isinstance(a, Annotation) or a.arrow_patch is None:
                continue
            path = a.arrow_patch.get_transform().transform_path(a.arrow_patch.get_path())
            out += [(a.get_text(), b.get_text()) for b, box in boxes if b is not a and path.intersects_bbox(box)]
    return out


def labels_on_bars(fig) -> list[str]:
    """Point labels that an error bar (a segment of an errorbar's LineCollection) runs through."""
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    out = []
    for ax in fig.axes:
        bars = [c.get_transform().transform_path(p) for c in ax.collections if isinstance(c, LineCollection)
                for p in c.get_paths()]
        for a in point_labels(ax):
            box = text_box(a, r).padded(-0.5)
            if any(p.intersects_bbox(box, filled=True) for p in bars):
                out.append(a.get_text())
    return out


def clipped_points(fig) -> list[str]:
    """Markers not wholly inside their axes (cut by its edge): '<axes title> at (x, y)'."""
    fig.canvas.draw()
    out = []
    for ax in fig.axes:
        frame = ax.get_window_extent()
        for art in ax.get_children():
            if not (isinstance(art, Line2D) and art.get_visible() and art.get_marker() not in (
                    None, "None", "", " ", "_", "|")):  # error-bar caps are not data points
                continue
            radius = art.get_markersize() / 2 * fig.dpi / 72
            xy = np.column_stack([art.get_xdata(), art.get_ydata()]).astype(float)
            for (px, py), (dx, dy) in zip(ax.transData.transform(xy), xy):
                if not (frame.x0 <= px - radius and px + radius <= frame.x1 and frame.y0 <= py - radius
                        and py + radius <= frame.y1):
                    out.append(f"{ax.get_title()!r} at ({dx:g}, {dy:g})")
    return out


def cut_bands(fig) -> list[str]:
    """Filled bands (a fit's confidence band) reaching past their axes' y view, where the axis would cut them."""
    out = []
    for ax in fig.axes:
        lo, hi = ax.get_ylim()
        for c in ax.collections:
            if isinstance(c, PolyCollection) and not isinstance(c, LineCollection):
                ys = np.concatenate([p.vertices[:, 1] for p in c.get_paths()] or [np.zeros(0)])
                if len(ys) and (ys.min() < lo - 1e-9 or ys.max() > hi + 1e-9):
                    out.append(f"band of {ax.get_title()!r} spans {ys.min():.1f}..{ys.max():.1f}, "
                               f"axis {lo:.1f}..{hi:.1f}")
    return out


NEGATIVE_ZERO = re.compile("[-\u2212]0(\\.0*)?(?![\\d.])")


def negative_zeros(fig) -> list[str]:
    """Texts that show a signed zero ("-0.00", "−0")."""
    return [t.get_text() for t in drawn_texts(fig) if NEGATIVE_ZERO.search(t.get_text())]


def tick_values(ax, axis: str = "x") -> list[float]:
    """The values of the tick labels an axis shows (inside its view, visible, not empty)."""
    fig = ax.figure
    shown = {id(t) for t in drawn_texts(fig)}
    ax_ = ax.xaxis if axis == "x" else ax.yaxis
    return [float(t.get_text().replace("\u2212", "-")) for t in ax_.get_ticklabels() if id(t) in shown]
