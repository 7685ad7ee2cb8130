"""Data-set report: what the score correlates with, and how a cut's selected rows differ from the rest.

Input is a table with one row per example: a `score` column and any number of numeric diagnostic
columns (form features, breakdown, outliers, measured surprisal; NaN where not measured, e.g. rows
outside a surprisal sample). Output is plain JSON-serialisable data (NaN becomes None).

- correlations: Spearman's rho (scipy) of the score with every column, over the rows where it is
  measured; constant columns get None.
- warnings: one plain sentence per column with |rho| >= DOMINANT_RHO, i.e. a column whose ranking
  alone reproduces most of the score's ranking, so cutting by score mostly cuts by that column.
- selection: at a cut (scar_core.select.cut), per column the mean and median of the selected and
  the dropped rows and the standardised mean difference (difference / pooled std).
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from scar_core.diagnostics.table import PARTS, dominance_note, part_shares
from scar_core.select import Selection

DOMINANT_RHO = 0.7
LABELS = {
    "words": "response length (words)", "chars": "response length (characters)",
    "markdown_density": "markdown density", "sentences": "number of sentences",
    "nll": "measured surprisal (LM loss)", "perplexity": "measured perplexity",
}


def _num(x) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def correlations(table: pd.DataFrame, score: str = "score") -> dict[str, dict]:
    """Spearman rho, p-value and the number of rows used, for every column against the score."""
    from scipy.stats import spearmanr  # scipy.stats takes 0.4 s to import; only reports need it

    out = {}
    s = table[score].to_numpy(np.float64)
    for col in table.columns:
        if col == score:
            continue
        x = table[col].to_numpy(np.float64)
        ok = np.isfinite(x) & np.isfinite(s)
        n = int(ok.sum())
        if n < 3 or np.ptp(x[ok]) == 0 or np.ptp(s[ok]) == 0:
            out[col] = {"rho": None, "p": None, "n": n}
            continue
        res = spearmanr(x[ok], s[ok])
        out[col] = {"rho": _num(res.statistic), "p": _num(res.pvalue), "n": n}
    return out


def warnings_for(corr: dict[str, dict], threshold: float = DOMINANT_RHO) -> list[str]:
    """Plain-language warnings for columns that alone explain most of the score's ranking."""
    out = []
    for col, c in sorted(corr.items(), key=lambda kv: -abs(kv[1]["rho"] or 0)):
        rho = c["rho"]
        if rho is None or abs(rho) < threshold or col in PARTS:
            continue
        name = LABELS.get(col, col.replace("_", " "))
        more = "higher" if rho > 0 else "lower"
        out.append(f"The score mostly ranks by {name} (Spearman rho = {rho:+.2f}): keeping the top of the "
                   f"ranking largely keeps the rows with {more} {name}. Check that this is what you want.")
    return out


def compare_selection(table: pd.DataFrame, chosen: Selection, score: str = "score") -> dict:
    """Selected vs dropped rows on every column at a cut."""
    mask = np.zeros(len(table), dtype=bool)
    mask[chosen.kept] = True
    columns = {}
    for col in table.columns:
        x = table[col].to_numpy(np.float64)
        a, b = x[mask & np.isfinite(x)], x[~mask & np.isfinite(x)]
        entry = {"selected_mean": None, "dropped_mean": None, "selected_median": None,
                 "dropped_median": None, "std_difference": None, "n_selected": len(a), "n_dropped": len(b)}
        if len(a) and len(b):
            pooled = math.sqrt((np.var(a) * len(a) + np.var(b) * len(b)) / (len(a) + len(b)))
            entry.update(selected_mean=_num(a.mean()), dropped_mean=_num(b.mean()),
                         selected_median=_num(np.median(a)), dropped_median=_num(np.median(b)),
                         std_difference=_num((a.mean() - b.mean()) / pooled) if pooled > 0 else None)
        columns[col] = entry
    return {"cut": chosen.params(), "selected": int(mask.sum()), "dropped": int((~mask).sum()),
            "columns": columns}


def breakdown_summary(table: pd.DataFrame, score: str = "score") -> dict:
    """Baseline and how much of the score's deviation from it comes from form vs surprisal (and the
    LM term, when the ranker has one), on average; `note` says so when one part carries nearly all of
    the ranking (scar_core.diagnostics.table.dominance_note)."""
    baseline = (table["baseline"] if "baseline" in table
                else table[score] - table[[p for p in PARTS if p in table]].sum(axis=1))
    lf, is_ = table["lf_contribution"].abs().mean(), table["is_contribution"].abs().mean()
    out = {"baseline": _num(baseline.median()), "mean_abs_lf_contribution": _num(lf),
           "mean_abs_is_contribution": _num(is_), "lf_share": _num(lf / (lf + is_)) if lf + is_ > 0 else None}
    if "lm_contribution" in table:
        out["mean_abs_lm_contribution"] = _num(table["lm_contribution"].abs().mean())
        out["lm_share"] = part_shares(table).get("lm_contribution")
    out["note"] = dominance_note(table)
    return out


def build_report(table: pd.DataFrame, chosen: Selection | None = None, score: str = "score",
                 extra: dict | None = None) -> dict:
    """The whole data-set report as JSON-serialisable data."""
    s = table[score].to_numpy(np.float64)
    corr = correlations(table, score)
    report = {
        "rows": len(table),
        "score": {"mean": _num(s.mean()), "std": _num(s.std()), "min": _num(s.min()),
                  "median": _num(np.median(s)), "max": _num(s.max())} if len(s) else None,
        "headline": {k: corr[k]["rho"] for k in ("words", "markdown_density") if k in corr},
        "correlations": corr,
        "summary": {col: {"mean": _num(table[col].mean()), "std": _num(table[col].std(ddof=0)),
                          "median": _num(table[col].median()), "measured": int(table[col].notna().sum())}
                    for col in table.columns},
        "warnings": warnings_for(corr),
        **(extra or {}),
    }
    if "lf_contribution" in table and "is_contribution" in table:
        report["breakdown"] = breakdown_summary(table, score)
    if chosen is not None:
        report["selection"] = compare_selection(table, chosen, score)
    return report
