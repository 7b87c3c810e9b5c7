"""Point labels a reader can attach, placed at a cost that does not grow with the number of points.

Each label tries a fixed set of places around its own point (``DIRECTIONS`` x ``GAPS_PX``), nearest first, and takes
the first one that keeps it inside the axes and off every point, error bar, other text and label already placed,
with a connector (when it needs one) that crosses no other connector, no label, no other point's marker and no other
point's error bar (in a cloud too dense for that, it may cross a bar but never run along one). The most constrained labels
choose first. At most ``MAX_LABELLED`` points are labelled (beyond that many, the ones farthest from the centre of
the cloud, and the key says how many of how many), so the work is bounded whatever the number of rules: at most
``MAX_LABELLED`` x ``len(DIRECTIONS) * len(GAPS_PX)`` candidate boxes, each checked against the panel's objects.
"""

from __future__ import annotations

import logging
import textwrap

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.lines import Line2D
from matplotlib.text import Annotation, Text
from matplotlib.transforms import Bbox

log = logging.getLogger(__name__)

MAX_NAMED = 10  # more labelled points than this (or a point shared by 3+ rules): points carry numbers, a key names them
MAX_LABELLED = 20  # more points than this: only the 20 (or 10, or 5) farthest from the centre are numbered
GAPS_PX = (1.5, 5, 10, 16, 24, 34, 46, 60, 76, 94, 115, 140, 170)  # display distance of a label's box from its point
DIRECTIONS = 24  # angles tried at each distance, the most horizontal first (labels beside their point)
LABEL_AIR_PX = 3.0  # air between two labels, so two names never read as one label with two connectors
NEAR_PX = 4.0  # a label this close to its own point, and clearly nearer it than any other, needs no connector
FONT = dict(fontsize=5.5, color="#333333")
CONNECTOR = dict(arrowstyle="-", color="#555555", lw=0.5, shrinkA=0, shrinkB=0)


def label_rules(fig: plt.Figure, ax: plt.Axes, x: np.ndarray, y: np.ndarray, rules: list[str], others: list,
                bars: tuple[np.ndarray, np.ndarray, np.ndarray]) -> list[Annotation]:
    """Label each point with its rule's name; rules on one point (common with coarse labels) share a label. Where
    names do not fit (more than ``MAX_NAMED`` points, a point shared by 3+ rules, or a cluster with no clean place)
    the points carry numbers and a key under the x label names the rules, numbered in the table's order. With more
    than ``MAX_LABELLED`` points, the farthest from the centre are numbered: 20, else 10, else 5, the most that
    find clean places. Clean first means no connector across another point's error bar; only where no set finds such
    places (a dense cloud), a connector may cross a bar, never run along one (at most 2 x 4 + 1 placements in all).
    ``bars``: the error bars (x, low, high); ``others``: texts and lines (a fit) of the panel; labels keep off all
    of them."""
    at: dict[tuple[float, float], list[int]] = {}
    for k, (xi, yi) in enumerate(zip(x, y)):
        at.setdefault((xi, yi), []).append(k)
    every = np.column_stack([x, y])
    sizes = [MAX_LABELLED] if len(at) <= MAX_LABELLED else [MAX_LABELLED, MAX_LABELLED // 2, MAX_LABELLED // 4]
    named = len(at) <= MAX_NAMED and all(len(r) <= 2 for r in at.values())
    # last resort: the smallest set at the places that break the fewest rules
    for strict, across in ((True, False), (True, True), (False, True)):
        for n in sizes if strict else sizes[-1:]:
            keep = _farthest(ax, list(at), n)
            shown = {p: ks for p, ks in at.items() if p in keep}
            if strict and named:
                names = ["\n".join(rules[k] for k in ks) for ks in shown.values()]
                labels = place(fig, ax, names, list(shown), every, others, bars, strict=True, across=across)
                if labels is not None:
                    return _said(ax, labels, across)
            # the key first: the layout makes room for it before labels are placed in the smaller axes
            key = _key(ax, rules, sorted(k for ks in shown.values() for k in ks), len(x))
            numbers = [",".join(str(k + 1) for k in ks) for ks in shown.values()]
            labels = place(fig, ax, numbers, list(shown), every, others, bars, strict=strict, across=across)
            if labels is not None:
                return _said(ax, labels, across)
            for part in key:
                part.remove()
    raise AssertionError("unreachable: a non-strict placement always places")


def _said(ax: plt.Axes, labels: list[Annotation], across: bool) -> list[Annotation]:
    """Mark (``ax.crossing_unavoidable``) and log a panel whose labels found no places without a connector across
    another point's error bar (points closer than their bars are wide), so a check can tell it from a careless one."""
    ax.crossing_unavoidable = across
    if across:
        log.info("labels of %r: no places without a connector across an error bar (the points are closer than their "
                 "bars are wide); some cross one", ax.get_title().split("\n")[0])
    return labels


def _farthest(ax: plt.Axes, points: list[tuple[float, float]], n: int) -> set[tuple[float, float]]:
    """The ``n`` points farthest from the cloud's centre in display space (ties: the earlier point); all of them
    when there are no more than ``n``."""
    if len(points) <= n:
        return set(points)
    xy = ax.transData.transform(np.asarray(points, float))
    d = np.hypot(*(xy - xy.mean(axis=0)).T)
    order = np.lexsort((np.arange(len(points)), -d))
    return {points[i] for i in order[:n]}


KEY_FONT = 5.0  # pt


def _key(ax: plt.Axes, rules: list[str], numbers: list[int], total: int) -> list[Annotation]:
    """The numbered rules in two columns below the x label (constrained layout makes room), each entry wrapped to
    its column's width (half the axes), a long name on more lines rather than across the other column or out of
    the figure."""
    fig = ax.figure
    column_pt = ax.get_position().width * fig.get_figwidth() * 72 / 2
    chars = max(12, int(column_pt / (0.6 * KEY_FONT)) - 1)  # DejaVu Sans averages 0.6 em a character
    key = ["\n".join(textwrap.wrap(f"{k + 1}  {rules[k]}", _chars(rules[k], chars), subsequent_indent="     ",
                                   break_on_hyphens=False)) for k in numbers]
    if len(numbers) < total:
        key += [f"({len(numbers)} of {total} rules labelled,", "those farthest from the centre)"]
    lines = np.cumsum([k.count("\n") + 1 for k in key])
    half = int(np.searchsorted(lines, (lines[-1] + 1) // 2) + 1) if key else 0  # columns of about equal height
    return [ax.annotate("\n".join(part), xy=(0.5 * c, 0), xycoords=("axes fraction", ax.xaxis.label),
                        xytext=(0, -3), textcoords="offset points", va="top", fontsize=KEY_FONT, color="#333333")
            for c, part in enumerate((key[:half], key[half:]))]


def _chars(text: str, chars: int) -> int:
    """Characters a line holds: CJK and other wide characters take about a full em, not 0.6."""
    return chars if all(ord(c) < 0x2E80 for c in text) else max(6, int(chars * 0.6))


def place(fig: plt.Figure, ax: plt.Axes, texts: list[str], points: list[tuple[float, float]], every: np.ndarray,
          others: list, bars: tuple[np.ndarray, np.ndarray, np.ndarray], strict: bool,
          across: bool = False) -> list[Annotation] | None:
    """Annotations of ``points`` (text ``i`` for ``points[i]``, data coordinates) at the nearest clean places;
    ``every``: all data points of the panel (N, 2), which no label may cover. ``strict``: None when some label has
    no clean place; otherwise such a label takes the place that breaks the fewest rules. ``across``: a connector may
    cross another point's error bar (never run along one)."""
    fig.canvas.draw()  # settle the layout: every box is in display coordinates
    r = fig.canvas.get_renderer()
    pts, own = ax.transData.transform(every), ax.transData.transform(np.asarray(points, float))
    marker = 3.5 * fig.dpi / 72  # the 3.5 pt marker's radius (1.75 pt), and as much air
    dots = np.column_stack([pts - marker, pts + marker])  # (N, 4) boxes of the markers
    rods = np.array([b.extents for b in bar_boxes(ax, *bars)]).reshape(-1, 4)
    texts_ = [t.get_window_extent(r).extents for t in others if not isinstance(t, Line2D)]
    lines = [_trace(t) for t in others if isinstance(t, Line2D)]  # a fit line: labels keep off, connectors cross
    static = np.concatenate([dots, rods, np.array(texts_).reshape(-1, 4), *lines])
    frame = ax.get_window_extent(r)
    options = []  # per label: (box, connector, how many fixed things it breaks, crosses a bar), nearest first
    for p, t in zip(own, texts):
        found = []
        for b in _candidates(p, *_size(ax, t, r)):
            seg = _connector(b, p, pts)  # weighed for the fallback: leaving the axes counts most
            stray, crossing = _astray(seg, dots, rods) if seg is not None else (False, False)
            bad = 1000 * (not _inside(b, frame)) + _hits(b, static) + stray
            if bad == 0 or not strict:
                found.append((b, seg, bad + (crossing and not strict), crossing))
        options.append(found)
    chosen = _choose([[o[:3] for o in opts if across or not o[3]] for opts in options], strict)
    if chosen is None:
        return None
    inverse = ax.transData.inverted().transform
    anns = [ax.annotate(t, xy=p, xytext=inverse((chosen[i][0].x0, chosen[i][0].y0)), ha="left", va="bottom",
                        arrowprops=_arrow(*chosen[i]), zorder=4, **FONT)
            for i, (t, p) in enumerate(zip(texts, points))]
    if strict and _drawn_crossings(fig, anns):  # the connectors as drawn, not as estimated: still none may cross
        for a in anns:
            a.remove()
        return None
    return anns


def _choose(options: list[list[tuple]], strict: bool) -> dict[int, tuple[Bbox, tuple | None]] | None:
    """A place for every label from its ``options`` (box, connector, fixed rules broken): none on another label (with
    :data:`LABEL_AIR_PX` between), no connector through a label or across another connector; the most constrained
    labels first, and a label left without a place goes first next time (bounded restarts). ``strict``: None when
    that fails; otherwise each label takes the place that breaks the fewest rules."""
    order = sorted(range(len(options)), key=lambda i: (sum(o[2] == 0 for o in options[i]), i))
    for _ in range(len(options)):
        chosen: dict[int, tuple[Bbox, tuple | None]] = {}
        for i in order:
            best = None
            for b, seg, fixed in options[i]:
                # weighed for the fallback: on another label 100, a connector through a label or across another
                # 10, anything fixed 1 (leaving the axes: 1000)
                bad = fixed + sum(100 * b.padded(LABEL_AIR_PX).overlaps(pb) + 10 * (
                    (ps is not None and _cuts(ps, b)) or (
                        seg is not None and (_cuts(seg, pb) or (ps is not None and crosses(seg, ps)))))
                    for pb, ps in chosen.values())
                if bad == 0:
                    best = (b, seg)
                    break
                if not strict and (best is None or bad < best[2]):
                    best = (b, seg, bad)
            if best is None:
                order.remove(i)
                order.insert(0, i)
                break
            chosen[i] = best[:2]
        if len(chosen) == len(options):
            return chosen
    return None


def _arrow(box: Bbox, seg: tuple[np.ndarray, np.ndarray] | None) -> dict | None:
    """The connector's properties, starting where the placement checked it: at ``seg``'s start on the box's edge.
    Without ``relpos`` matplotlib starts a styled arrow at the middle of the text box (``Annotation``'s default
    (0.5, 0.5) whenever ``arrowstyle`` is given), and the line may then run through a neighbouring label."""
    if seg is None:
        return None
    start = seg[0]
    return {**CONNECTOR, "relpos": ((start[0] - box.x0) / box.width, (start[1] - box.y0) / box.height)}


def _drawn_crossings(fig: plt.Figure, anns: list[Annotation]) -> bool:
    """Whether, as drawn, two connectors cross or one runs through another label's text."""
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    drawn = [(a, a.arrow_patch.get_transform().transform(a.arrow_patch.get_path().vertices)[[0, -1]]) for a in anns
             if a.arrow_patch is not None]
    boxes = [(a, Text.get_window_extent(a, r)) for a in anns]  # the text alone: an annotation's spans its line
    return (any(crosses(drawn[i][1], drawn[j][1]) for i in range(len(drawn)) for j in range(i + 1, len(drawn)))
            or any(_cuts(seg, box) for a, seg in drawn for b, box in boxes if b is not a))


def _trace(line: Line2D) -> np.ndarray:
    """A drawn line as (M, 4) boxes of 2 x 2 display pixels along it."""
    xy = line.get_transform().transform(np.column_stack(line.get_data()).astype(float))
    steps = [np.linspace(a, b, max(int(np.hypot(*(b - a)) // 2), 1) + 1) for a, b in zip(xy[:-1], xy[1:])]
    pts = np.concatenate(steps) if steps else xy
    return np.column_stack([pts - 1, pts + 1])


def _size(ax: plt.Axes, text: str, renderer) -> tuple[float, float]:
    t = ax.text(0, 0, text, ha="left", va="bottom", **FONT)
    box = t.get_window_extent(renderer)
    t.remove()
    return box.width, box.height


def _candidates(p: np.ndarray, w: float, h: float) -> list[Bbox]:
    """Boxes of size (w, h) around ``p``, nearest first: at each gap, ``DIRECTIONS`` angles, the most horizontal
    first (east before west)."""
    angles = np.arange(DIRECTIONS) * 2 * np.pi / DIRECTIONS
    angles = angles[np.lexsort((np.cos(angles) < 0, np.abs(np.sin(angles)).round(9)))]
    out = []
    for gap in GAPS_PX:
        for a in angles:
            c, s = np.cos(a), np.sin(a)
            cx, cy = p[0] + c * (w / 2 + gap), p[1] + s * (h / 2 + gap)
            out.append(Bbox([[cx - w / 2, cy - h / 2], [cx + w / 2, cy + h / 2]]))
    return out


def _inside(b: Bbox, frame: Bbox) -> bool:
    return frame.x0 + 1 <= b.x0 and b.x1 <= frame.x1 - 1 and frame.y0 + 1 <= b.y0 and b.y1 <= frame.y1 - 1


def _hits(b: Bbox, boxes: np.ndarray) -> int:
    """How many of ``boxes`` (M, 4: x0, y0, x1, y1) box ``b`` overlaps."""
    return int(((boxes[:, 0] < b.x1) & (b.x0 < boxes[:, 2]) & (boxes[:, 1] < b.y1) & (b.y0 < boxes[:, 3])).sum())


def _connector(b: Bbox, p: np.ndarray, pts: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """The segment from box ``b`` to its point ``p``, starting at the box's edge point nearest ``p`` (the drawn
    connector starts there too: :func:`_arrow` passes it as ``relpos``), or None when the label sits so close to its
    own point that it needs none."""
    gaps = np.hypot(np.maximum.reduce([b.x0 - pts[:, 0], 0 * pts[:, 0], pts[:, 0] - b.x1]),
                    np.maximum.reduce([b.y0 - pts[:, 1], 0 * pts[:, 1], pts[:, 1] - b.y1]))
    mine = np.hypot(*(pts - p).T) < 1e-6
    own = gaps[mine].min()
    if own <= NEAR_PX and gaps[~mine].min(initial=np.inf) > own + 2 * NEAR_PX:
        return None
    x = min((b.x0, b.x0 + b.width / 2, b.x1), key=lambda v: abs(v - p[0]))
    y = min((b.y0, b.y0 + b.height / 2, b.y1), key=lambda v: abs(v - p[1]))
    return np.array([x, y]), np.asarray(p, float)


def bar_boxes(ax: plt.Axes, x: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> list[Bbox]:
    """Display-coordinate boxes of vertical error bars (5 px wide: the caps), for labels to keep off."""
    a, b = ax.transData.transform(np.column_stack([x, lo])), ax.transData.transform(np.column_stack([x, hi]))
    return [Bbox([[p[0] - 2.5, p[1]], [p[0] + 2.5, q[1]]]) for p, q in zip(a, b)
            if np.isfinite(p).all() and np.isfinite(q).all()]


def crosses(s: tuple[np.ndarray, np.ndarray], t: tuple[np.ndarray, np.ndarray], air: float = 2.0) -> bool:
    """Whether two segments intersect or pass within ``air`` display pixels of each other (which reads as a
    crossing at print size)."""
    def side(a, b, c):
        return np.sign((b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0]))

    def dist(c, a, b):  # point c to segment ab
        ab = b - a
        u = np.clip(np.dot(c - a, ab) / max(np.dot(ab, ab), 1e-12), 0, 1)
        return float(np.hypot(*(a + u * ab - c)))

    (p, q), (u, v) = s, t
    if side(p, q, u) * side(p, q, v) < 0 and side(u, v, p) * side(u, v, q) < 0:
        return True
    return min(dist(u, p, q), dist(v, p, q), dist(p, u, v), dist(q, u, v)) < air


def _astray(seg: tuple[np.ndarray, np.ndarray], dots: np.ndarray, rods: np.ndarray) -> tuple[bool, bool]:
    """Whether a connector would mislead (passing over another point's marker, or running along another point's
    error bar: over a quarter of its length inside one), and whether it crosses another point's error bar at all
    (its own point's bar, and one through its own marker, are where it ends)."""
    every = _samples(seg)
    p, radius = seg[1], (dots[0, 2] - dots[0, 0]) / 4  # the marker's radius (dots hold it and as much air)
    off = every[np.hypot(*(every - p).T) > 2 * radius + 1]  # off its own point's marker
    own = (np.abs((rods[:, 0] + rods[:, 2]) / 2 - p[0]) <= radius) & (rods[:, 1] - 1 <= p[1]) & (p[1] <= rods[:, 3] + 1)

    def inside(xy: np.ndarray, boxes: np.ndarray) -> np.ndarray:  # (samples, boxes)
        return ((xy[:, None, 0] > boxes[:, 0]) & (xy[:, None, 0] < boxes[:, 2]) & (xy[:, None, 1] > boxes[:, 1])
                & (xy[:, None, 1] < boxes[:, 3]))

    on_bars = inside(every, rods[~own])
    along = bool((on_bars.sum(axis=0) > 0.25 * len(every)).any())
    return bool(inside(off, dots).any()) or along, bool(on_bars.any())


def _samples(seg: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    return seg[0] + np.linspace(0, 1, 64)[:, None] * (seg[1] - seg[0])


def _cuts(seg: tuple[np.ndarray, np.ndarray], b: Bbox) -> bool:
    """Whether the segment passes through the inside of box ``b`` (half a pixel in from its edges), exactly: the
    part of the segment inside the box (Liang-Barsky clipping) has a positive length. Sampling points along it
    missed a line clipping a label's corner."""
    inner = b.padded(-0.5)
    (x0, y0), (x1, y1) = seg
    lo, hi = 0.0, 1.0
    for d, room in ((x0 - x1, x0 - inner.x0), (x1 - x0, inner.x1 - x0), (y0 - y1, y0 - inner.y0),
                    (y1 - y0, inner.y1 - y0)):
        if d == 0:
            if room <= 0:  # parallel to this edge and outside it
                return False
        elif d < 0:
            lo = max(lo, room / d)
        else:
            hi = min(hi, room / d)
    return lo < hi
