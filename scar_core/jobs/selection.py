"""Selections of a scoring run: the store's per-example columns through the library's one selection
rule (scar_core.select), and saving what it kept."""
from __future__ import annotations

import numpy as np
import pandas as pd

from db import browse, selections
from db.models import Selection as SavedSelection
from db.store import Store
from scar_core.clean import duplicate_of
from scar_core.select import Selection, select


def run_table(store: Store, run_id: int) -> pd.DataFrame:
    """The run's per-example columns (db.browse.run_columns) with `flags` naming every finding, exact
    and near duplicates included: which copy of a cluster is the duplicate depends on this run's scores."""
    table = browse.run_columns(store, run_id)
    clusters = table["duplicate_cluster"].to_numpy()
    keeper = duplicate_of(clusters, table["score"].to_numpy(), table["language"].to_numpy())
    groups = table["exact_group"].to_numpy()
    dup = keeper >= 0
    kind = np.where(groups == groups[np.maximum(keeper, 0)], "exact", "near")
    table["flags"] = [", ".join(sorted([*filter(None, stored.split(", ")), *([k] if d else [])]))
                      for stored, k, d in zip(table["flags"], kind, dup)]
    return table


def flag_names(table: pd.DataFrame) -> list[str]:
    """The cleaning findings present in a run table (its `flags` column), sorted."""
    return sorted({name for flags in table["flags"] for name in flags.split(", ") if name})


def flagged_ids(table: pd.DataFrame, flag: str) -> list[int]:
    """Example ids of a run table's rows carrying this finding."""
    return [int(i) for i, flags in zip(table["example_id"], table["flags"]) if flag in flags.split(", ")]


def select_run(store: Store, run_id: int, rule: str, value: float, *, use_labels: bool = True,
               keep_flagged: bool = False, quotas: dict[str, int] | None = None,
               table: pd.DataFrame | None = None) -> tuple[Selection, pd.DataFrame]:
    """Apply the selection rule to a run (its table from `run_table`, read when not given; labels are
    always read fresh): (what it kept, the table its positions refer to)."""
    table = run_table(store, run_id) if table is None else table
    labels = table["example_id"].map(browse.run_labels(store, run_id)).to_numpy(dtype=object) if use_labels else None
    chosen = select(table["score"].to_numpy(), rule, value, clusters=table["duplicate_cluster"].to_numpy(),
                    off_language=table["language"].to_numpy(), sources=table["source"].to_numpy(dtype=object),
                    quotas=quotas, labels=labels, keep_flagged=keep_flagged)
    return chosen, table


def save(store: Store, run_id: int, name: str, chosen: Selection, table: pd.DataFrame) -> SavedSelection:
    """Store what a selection kept (example ids, best first) and its parameters under a name."""
    ids = table["example_id"].to_numpy()[chosen.kept]
    return selections.save_selection(store, run_id, name.strip() or "selection", chosen.rule, chosen.params(),
                                     ids.tolist())
