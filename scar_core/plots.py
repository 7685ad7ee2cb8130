"""Plotly figures for the app: histograms, the cut view, score vs length and the 2-D maps.

Every figure is built from numbers already reduced on the server (numpy histograms, a seeded
sample of points), so a 100k-row pool never ships 100k points to the browser. Scatter plots use
WebGL (`Scattergl`). The only text from the data in a figure is a category name (a source or a
label), HTML-escaped because plotly renders a subset of HTML (links, tags) in legends.
"""
from __future__ import annotations

import html
from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

KEPT, DROPPED = "#2e7d32", "#9e9e9e"
MAX_POINTS = 10_000


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
        fig.add_scatter(x=(pos + 1) / n, y=ordered[pos], mode="lines", name="threshold", line_color="#1f77b4")
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
    return _layout(fig, "Score against score" + shown, html.escape(x), html.escape(y))


def style_map(x: np.ndarray, y: np.ndarray, ids: np.ndarray, colour: Sequence, title: str,
              continuous: bool, max_points: int = MAX_POINTS, height: int = 420) -> go.Figure:
    """A WebGL scatter of 2-D map coordinates; `customdata` holds the example ids for box/lasso selection.

    continuous: colour is numeric (a colour scale); otherwise categorical (one trace per value).
    """
    x, y, ids = np.asarray(x), np.asarray(y), np.asarray(ids)
    colour = np.asarray(colour, dtype=np.float64 if continuous else object)
    total = len(x)
    pick = sample(total, max_points)
    x, y, ids, colour = x[pick], y[pick], ids[pick], colour[pick]
    fig = go.Figure()
    if continuous:
        fig.add_scattergl(x=x, y=y, customdata=ids, mode="markers", name="rows",
                          hovertemplate="id %{customdata}<br>%{marker.color:.3f}<extra></extra>",
                          marker=dict(size=4, color=colour, colorscale="Viridis", showscale=True, opacity=0.8))
    else:
        labels = np.array(["(none)" if v is None else html.escape(str(v)) for v in colour], dtype=object)
        for value in sorted(set(labels.tolist())):
            mask = labels == value
            fig.add_scattergl(x=x[mask], y=y[mask], customdata=ids[mask], mode="markers", name=value,
                              hovertemplate="id %{customdata}<extra></extra>", marker=dict(size=4, opacity=0.8))
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
