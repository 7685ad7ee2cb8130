"""Plotly figures for the app: histograms, the cut view, score vs length and the 2-D maps.

Every figure is built from numbers already reduced on the server (numpy histograms, a seeded
sample of points), so a 100k-row pool never ships 100k points to the browser. Scatter plots use
WebGL (`Scattergl`). The only text from the data in a figure is a category name (a source or a
label) and a map point's hover text, HTML-escaped because plotly renders a subset of HTML (links,
tags) in legends and hover labels. Only `&`, `<` and `>` are escaped (`plain`): plotly decodes no
`&quot;`, so escaping quotes showed them as `&quot;` in the hover.
"""
from __future__ import annotations

import html
from collections.abc import Collection, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from scar_core.display import snippet

KEPT, DROPPED = "#2e7d32", "#9e9e9e"
UNLABELLED, SELECTED, NOT_SELECTED = "unlabelled", "selected", "not selected"
PALE = "#cfcfcf"
LABEL_COLOURS = {"keep": KEPT, "drop": "#d62728", "flag": "#ff9800", "conflict": "#9c27b0", UNLABELLED: PALE}
# categories drawn in their own colour, larger and on top (emphasised) or pale grey underneath (the rest)
CATEGORY_COLOURS = {**LABEL_COLOURS, SELECTED: "#d62728", NOT_SELECTED: PALE}
BACKGROUND = (UNLABELLED, NOT_SELECTED)
MAX_POINTS = 10_000
MAX_LEGEND = 20  # categories a map's legend lists (up to 100 clusters would push the map off the page)


def plain(text: str) -> str:
    """Text from the data made inert for plotly's HTML subset: `&`, `<`, `>` escaped, quotes left as
    they are (plotly shows `&quot;` literally, it decodes only a few named entities)."""
    return html.escape(text, quote=False)


def sample(n: int, max_points: int = MAX_POINTS, seed: int = 0) -> np.ndarray:
    """Sorted positions of at most `max_points` of `n` rows (a seeded random sample)."""
    if n <= max_points:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=max_points, replace=False))


def _layout(fig: go.Figure, title: str, x: str, y: str, height: int = 300) -> go.Figure:
    fig.update_layout(title=title, xaxis_title=x, yaxis_title=y, height=height,
                      margin=dict(l=40, r=10, t=40, b=40), bargap=0.02, legend=dict(orientation="h", y=-0.25))
    return fig


def histogram(values: np.ndarray, title: str, x: str, bins: int = 60, cut_at: float | None = None) -> go.Figure:
    """A histogram computed with numpy (only bin counts reach the browser), with an optional cut line."""
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    fig = go.Figure()
    if len(values):
        counts, edges = np.histogram(values, bins=bins)
        fig.add_bar(x=(edges[:-1] + edges[1:]) / 2, y=counts, width=np.diff(edges), marker_color="#1f77b4",
                    name="rows")
    if cut_at is not None:
        fig.add_vline(x=cut_at, line_color="#d62728", line_dash="dash",
                      annotation_text=f"cut {cut_at:.3f}", annotation_position="top left")
    return _layout(fig, title, x, "rows")


def kept_dropped_histogram(values: np.ndarray, kept: np.ndarray, title: str, x: str, bins: int = 50) -> go.Figure:
    """Overlaid histograms of `values` for kept (mask True) and dropped rows on shared bins."""
    values = np.asarray(values, dtype=np.float64)
    kept = np.asarray(kept, dtype=bool)
    fig = go.Figure()
    if len(values):
        edges = np.histogram_bin_edges(values, bins=bins)
        centres, widths = (edges[:-1] + edges[1:]) / 2, np.diff(edges)
        for mask, name, colour in ((kept, "kept", KEPT), (~kept, "dropped", DROPPED)):
            counts, _ = np.histogram(values[mask], bins=edges)
            fig.add_bar(x=centres, y=counts, width=widths, name=f"{name} ({int(mask.sum())})",
                        marker_color=colour, opacity=0.7)
    fig.update_layout(barmode="overlay")
    return _layout(fig, title, x, "rows")


def threshold_curve(scores: np.ndarray, current_ratio: float | None = None, points: int = 400) -> go.Figure:
    """The lowest kept score (the threshold) as a function of the kept ratio."""
    ordered = np.sort(np.asarray(scores, dtype=np.float64))[::-1]
    n = len(ordered)
    fig = go.Figure()
    if n:
        pos = np.unique(np.linspace(0, n - 1, min(points, n)).astype(np.int64))
        # markers, not a bare line: plotly selects (and Streamlit reports) a clicked point only on markers
        fig.add_scatter(x=(pos + 1) / n, y=ordered[pos], mode="lines+markers", name="threshold",
                        line_color="#1f77b4", marker=dict(size=4))
        if current_ratio is not None and current_ratio > 0:
            k = min(n, max(1, int(np.ceil(current_ratio * n))))
            fig.add_scatter(x=[k / n], y=[ordered[k - 1]], mode="markers", marker=dict(size=10, color="#d62728"),
                            name="current cut")
    return _layout(fig, "Threshold score against kept ratio", "kept ratio", "lowest kept score")


def score_vs_length(scores: np.ndarray, lengths: np.ndarray, kept: np.ndarray | None = None,
                    max_points: int = 5000) -> go.Figure:
    """Score against response length on a seeded sample of rows (WebGL)."""
    scores, lengths = np.asarray(scores), np.asarray(lengths)
    pick = sample(len(scores), max_points)
    fig = go.Figure()
    if kept is None:
        fig.add_scattergl(x=lengths[pick], y=scores[pick], mode="markers", marker=dict(size=4, opacity=0.6),
                          name="rows")
    else:
        kept = np.asarray(kept, dtype=bool)[pick]
        for mask, name, colour in ((kept, "kept", KEPT), (~kept, "dropped", DROPPED)):
            fig.add_scattergl(x=lengths[pick][mask], y=scores[pick][mask], mode="markers", name=name,
                              marker=dict(size=4, opacity=0.6, color=colour))
    shown = f" ({len(pick)} of {len(scores)} shown)" if len(pick) < len(scores) else ""
    return _layout(fig, "Score against response length" + shown, "response length (words)", "score")


def overlap_curve(overlap: pd.DataFrame) -> go.Figure:
    """The share of the top k% two scorings both keep, for each k (columns k_percent, overlap, rows, shared)."""
    fig = go.Figure()
    fig.add_scatter(x=overlap["k_percent"], y=overlap["overlap"], mode="lines+markers", name="overlap",
                    customdata=overlap[["shared", "rows"]].to_numpy(), marker=dict(size=4),
                    hovertemplate="top %{x}%: %{customdata[0]} of %{customdata[1]} rows in both<extra></extra>")
    fig.update_layout(yaxis=dict(range=[0, 1.02], tickformat=".0%"))
    return _layout(fig, "Overlap of the two runs' top k%", "k (% of the rows kept)", "kept by both")


def score_scatter(ids: np.ndarray, a: np.ndarray, b: np.ndarray, x: str, y: str,
                  max_points: int = 5000) -> go.Figure:
    """One run's score against another's on a seeded sample of rows (WebGL); `customdata` holds example ids."""
    pick = sample(len(a), max_points)
    fig = go.Figure()
    fig.add_scattergl(x=np.asarray(a)[pick], y=np.asarray(b)[pick], customdata=np.asarray(ids)[pick],
                      mode="markers", marker=dict(size=4, opacity=0.6), name="rows",
                      hovertemplate="id %{customdata}<br>A %{x:.4f}<br>B %{y:.4f}<extra></extra>")
    shown = f" ({len(pick)} of {len(a)} shown)" if len(pick) < len(a) else ""
    return _layout(fig, "Score against score" + shown, plain(x), plain(y))


def point_hover(instruction: Sequence[str], response: Sequence[str], score: Sequence[float],
                words: int = 12) -> list[str]:
    """Hover text for map points: the score and the first `words` words of instruction and response,
    with control characters made visible and HTML escaped (plotly renders tags in hover labels)."""
    def first(text: str) -> str:
        cut = snippet(text, 400).split(" ")
        return plain(" ".join(cut[:words]) + (" …" if len(cut) > words else ""))
    return [f"score {float(v):.3f}<br><b>instruction</b> {first(i)}<br><b>response</b> {first(r)}"
            for i, r, v in zip(instruction, response, score)]


def _category(value: object) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)) or value == "":
        return "(none)"
    return plain(str(value))


def style_map(x: np.ndarray, y: np.ndarray, ids: np.ndarray, colour: Sequence, title: str,
              continuous: bool, hover: Sequence[str] | None = None, labelled: Collection[int] = (),
              highlighted: Collection[int] = (), max_points: int = MAX_POINTS, height: int = 420) -> go.Figure:
    """A WebGL scatter of 2-D map coordinates; `customdata` holds the example ids for selection and clicks.

    continuous: colour is numeric (a colour scale); otherwise categorical, one trace per value, the
    biggest drawn first so small groups lie on top; label names and SELECTED (CATEGORY_COLOURS) get their
    own colours and larger markers on top, UNLABELLED and NOT_SELECTED a pale grey underneath. hover:
    one text per point (point_hover). labelled:
    ids ringed in black; highlighted: ids drawn as pink diamonds (e.g. picked on the other map).
    """
    x, y, ids = np.asarray(x), np.asarray(y), np.asarray(ids)
    colour = np.asarray(colour, dtype=np.float64 if continuous else object)
    text = np.asarray(hover if hover is not None else [""] * len(x), dtype=object)
    total = len(x)
    pick = sample(total, max_points)
    px, py, pids, pcolour, ptext = x[pick], y[pick], ids[pick], colour[pick], text[pick]
    fig = go.Figure()

    def points(at_x, at_y, at_ids, at_text, name: str, marker: dict, legend: bool = True) -> None:
        fig.add_scattergl(x=at_x, y=at_y, customdata=at_ids, hovertext=at_text, name=name, mode="markers",
                          hovertemplate="%{hovertext}<extra></extra>", marker=marker, showlegend=legend)
    if continuous:
        points(px, py, pids, ptext, "rows",
               dict(size=4, color=pcolour, colorscale="Viridis", showscale=True, opacity=0.8))
    else:
        names = np.array([_category(v) for v in pcolour], dtype=object)
        values, counts = np.unique(names, return_counts=True) if len(names) else ([], [])
        order = sorted(zip(values, counts), key=lambda vc: (vc[0] not in BACKGROUND, -vc[1], vc[0]))
        for value, _ in order:
            mask = names == value
            emphasised = value in CATEGORY_COLOURS and value not in BACKGROUND
            marker = dict(size=8 if emphasised else 4, opacity=1.0 if emphasised else 0.6)
            if value in CATEGORY_COLOURS:
                marker["color"] = CATEGORY_COLOURS[value]
            if emphasised:
                marker["line"] = dict(width=1, color="#212121")
            points(px[mask], py[mask], pids[mask], ptext[mask], value, marker, len(order) <= MAX_LEGEND)
    for chosen, name, marker in ((labelled, "labelled", dict(size=11, symbol="circle-open", color="#212121")),
                                 (highlighted, "picked on the other map",
                                  dict(size=9, symbol="diamond", color="#e91e63", line=dict(width=1, color="#fff")))):
        mask = np.isin(ids, np.fromiter(chosen, dtype=ids.dtype if len(ids) else np.int64))
        where = np.flatnonzero(mask)[:max_points]
        if len(where):
            points(x[where], y[where], ids[where], text[where], f"{name} ({int(mask.sum())})", marker)
    shown = f" ({len(pick)} of {total} shown)" if len(pick) < total else ""
    fig.update_layout(dragmode="lasso", xaxis=dict(showticklabels=False), yaxis=dict(showticklabels=False))
    return _layout(fig, title + shown, "", "", height=height)


def training_curve(epochs: pd.DataFrame) -> go.Figure:
    """Training loss and validation pairwise accuracy per epoch (columns epoch, loss, val_accuracy)."""
    fig = go.Figure()
    fig.add_scatter(x=epochs["epoch"], y=epochs["loss"], name="training loss", mode="lines+markers")
    fig.add_scatter(x=epochs["epoch"], y=epochs["val_accuracy"], name="validation pairwise accuracy",
                    mode="lines+markers", yaxis="y2")
    fig.update_layout(height=320, xaxis_title="epoch", yaxis_title="loss",
                      yaxis2=dict(title="accuracy", overlaying="y", side="right", range=[0, 1]))
    return fig
