"""Selections of a scoring run: the store's per-example columns through the library's one selection
rule (scar_core.select), and saving what it kept."""
from __future__ import annotations

import numpy as np
import pandas as pd

from dataclasses import dataclass

from db import browse, runs, selections
from db.models import Selection as SavedSelection
from db.store import Store
from scar_core.clean import duplicate_of, left_out_kind
from scar_core.jobs import access
from scar_core.jobs import labelling, signals as signal_jobs
from scar_core.labels import DEFAULT_POLICY, Resolution, label_summary
from scar_core.baselines import baselines
from scar_core.coverage import cluster_rows, covered_cut
from scar_core.evidence import evidence
from scar_core.select import Selection, eligible_rows
from scar_core.signals import SCAR, combine


def run_table(store: Store, run_id: int) -> pd.DataFrame:
    """The run's per-example columns (db.browse.run_columns) with `flags` naming every finding, exact
    and near duplicates included: which copy of a cluster is the duplicate depends on this run's scores.
    `left_out_by` names the stored flag that leaves a row out of cuts whatever its score (language, echo,
    empty, a dropped refusal; None: none; scar_core.clean.left_out_kind)."""
    table = browse.run_columns(store, run_id)
    table["left_out_by"] = [left_out_kind(findings) for findings in table["findings"]]  # None: no such flag
    clusters = table["duplicate_cluster"].to_numpy()
    keeper = duplicate_of(clusters, table["score"].to_numpy(), table["left_out_by"].notna().to_numpy())
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


def run_embeddings(store: Store, table: pd.DataFrame, run_id: int) -> np.ndarray:
    """The run's v_lf vectors in the order of its table's rows (zeros where a row has none)."""
    ids, vectors = runs.run_vectors(store, run_id, "lf")
    out = np.zeros((len(table), vectors.shape[1] if vectors.ndim == 2 else 0), np.float32)
    at = pd.Series(np.arange(len(table)), index=table["example_id"].to_numpy())
    out[at.reindex(ids).to_numpy()] = vectors
    return out


@dataclass(frozen=True)
class Space:
    """A run's response embeddings (v_lf, in its table's row order) and their k-means clusters (-1: none),
    read and computed once per run for the coverage cut and the evidence (pages cache it). `clusters`
    cover every scored row (the maps colour by them); `pool_clusters` only `pool`, the rows a cut may take
    under the default cleaning: a coverage cut spreads over the clusters of its own pool, as
    `rank --coverage` makes them."""

    vectors: np.ndarray
    clusters: np.ndarray
    k: int
    pool: np.ndarray
    pool_clusters: np.ndarray
    seed: int = 0


def run_space(store: Store, run_id: int, table: pd.DataFrame, seed: int = 0) -> Space:
    vectors = run_embeddings(store, table, run_id)
    scores = table["score"].to_numpy(dtype=np.float64)
    pool = eligible_rows(scores, table["duplicate_cluster"].to_numpy(), table["left_out_by"].to_numpy(dtype=object))[0]
    return Space(vectors, *cluster_rows(vectors, pool=~np.isnan(scores), seed=seed), pool,
                 cluster_rows(vectors, pool=pool, seed=seed)[0], seed)


def select_run(store: Store, run_id: int, rule: str, value: float, *, use_labels: bool = True,
               policy: str = DEFAULT_POLICY, keep_flagged: bool = False, quotas: dict[str, int] | None = None,
               table: pd.DataFrame | None = None, coverage: float = 0.0,
               space: Space | None = None, weights: dict[str, float] | None = None) -> tuple[Selection, pd.DataFrame]:
    """Apply the selection rule to a run (its table from `run_table`, read when not given; labels are
    always read fresh and decided by the label `policy`; `coverage` above 0 spreads the cut over the
    run's clusters, from `space` (run_space) when given; `weights` ({"scar": 1, signal name: w}) cut on
    the blend of the score and the run's signals, scar_core.signals.combine): (what it kept, the table
    its positions refer to)."""
    table = run_table(store, run_id) if table is None else table
    decided = labelling.resolution(store, run_id, policy) if use_labels else None
    per_row = table["example_id"].map(decided.decided).to_numpy(dtype=object) if decided else None
    scores = table["score"].to_numpy()
    cleaning = dict(clusters=table["duplicate_cluster"].to_numpy(),
                    left_out_by=table["left_out_by"].to_numpy(dtype=object), keep_flagged=keep_flagged)
    if weights:  # z-scored over the rows this cut may take, as `rank --weights` does
        scores = blended_scores(store, run_id, table, weights, pool=eligible_rows(scores, **cleaning)[0])
    groups = None
    if coverage > 0:
        space = space or run_space(store, run_id, table)
        same_pool = np.array_equal(eligible_rows(scores, **cleaning)[0], space.pool)
        groups = space.pool_clusters if same_pool else None  # else clustered afresh from the vectors
    chosen, _ = covered_cut(scores, rule, value, coverage, vectors=space.vectors if space else None, groups=groups,
                            seed=space.seed if space else 0, sources=table["source"].to_numpy(dtype=object),
                            quotas=quotas, labels=per_row, **cleaning)
    chosen.label_policy = label_summary(decided)
    if weights:
        chosen.blend = signal_jobs.blend_settings(store, run_id, weights)
    return chosen, table


def blended_scores(store: Store, run_id: int, table: pd.DataFrame, weights: dict[str, float],
                   pool: np.ndarray | None = None) -> np.ndarray:
    """The blend of the score and the run's signals by `weights`, per row of `table`, z-scored over `pool`
    (NaN: a weighted value is missing, so the row is not eligible)."""
    columns = signal_jobs.with_signals(store, run_id, table[["example_id"]])
    named = {SCAR: table["score"].to_numpy(dtype=np.float64),
             **{c: columns[c].to_numpy(dtype=np.float64) for c in columns.columns if c != "example_id"}}
    return combine(named, weights, pool=pool)


def run_evidence(chosen: Selection, table: pd.DataFrame, space: Space, decided: Resolution | None) -> pd.DataFrame:
    """The cut beside its three matched baselines (scar_core.baselines, same cleaning, quotas and the
    labels the policy `decided`): one row per subset of scar_core.evidence's figures, for the Select page."""
    scores, lengths = table["score"].to_numpy(), table["words"].to_numpy()
    sources = table["source"].to_numpy(dtype=object)
    labels = (table["example_id"].map(decided.decided).to_numpy(dtype=object)
              if chosen.labels_applied and decided is not None else None)
    subsets = baselines(chosen, scores, lengths, sources=sources, labels=labels, seed=space.seed)
    # the clusters of the cut's own pool, as the bundle and `rank --baselines` count them
    clusters = (space.pool_clusters if np.array_equal(chosen.pool, space.pool)
                else cluster_rows(space.vectors, pool=chosen.pool, seed=space.seed)[0])
    return evidence({"cut": chosen, **subsets}, scores=scores, lengths=lengths, vectors=space.vectors,
                    clusters=clusters, sources=sources, labels=labels, pool=chosen.pool).table


@dataclass(frozen=True)
class Saved:
    """What saving a selection did: the stored version and whether it is new (False: the same cut was
    saved under this name already, nothing new stored); `taken`: nothing saved, the name is in use
    and replacing was not asked for (`selection` is then the name's latest version)."""

    selection: SavedSelection
    new: bool
    taken: bool = False

    def message(self) -> str:
        s = self.selection
        if self.taken:
            return (f"A selection named '{s.name}' already exists (version {s.version}, {len(s.example_ids)} "
                    "examples). Replace it (it stays as an earlier version) or choose another name.")
        if not self.new:
            return (f"This cut is already saved as '{s.name}' (version {s.version}, #{s.id}, "
                    f"{len(s.example_ids)} examples); nothing new saved.")
        replaced = f", replacing version {s.version - 1} (kept as an earlier version)" if s.version > 1 else ""
        return f"Saved selection '{s.name}' version {s.version} (#{s.id}) with {len(s.example_ids)} examples{replaced}."


@access.action("select", run="run_id", what="saved selection '{name}' of run {run_id}")
def save(store: Store, run_id: int, name: str, chosen: Selection, table: pd.DataFrame,
         replace: bool = False, seed: int = 0) -> Saved:
    """Store what a selection kept (example ids, best first), its parameters, the seed of its clustering
    and matched baselines (the Export page's bundle remakes them) and the label events it
    saw (the latest event id and a hash of all the run's events) under a name. A name this run uses already saves nothing (Saved.taken) unless `replace`,
    which adds a version; saving the very cut the name holds stores nothing new."""
    ids = table["example_id"].to_numpy()[chosen.kept].tolist()
    name = name.strip() or "selection"
    params = {**chosen.params(), "seed": seed, "label_events": labelling.event_digest(store, run_id)}
    latest = next((s for s in selections.list_selections(store, run_id) if s.name == name), None)
    if latest is not None and latest.example_ids == ids and _same_cut(latest.params, params):
        return Saved(latest, False)
    try:
        return Saved(selections.save_selection(store, run_id, name, chosen.rule, params, ids, replace=replace), True)
    except selections.NameTaken as taken:
        return Saved(taken.latest, False, taken=True)


def saved(store: Store, run_id: int, versions: bool = False) -> list[SavedSelection]:
    """The run's saved selections: the latest version of each name, or with `versions` every version."""
    return selections.list_selections(store, run_id, versions=versions)


def saved_one(store: Store, selection_id: int) -> SavedSelection | None:
    return selections.get_selection(store, selection_id)


def exports(store: Store, run_id: int) -> list:
    """The files written from the run's selections, newest first."""
    return selections.list_exports(store, run_id)


def _same_cut(a: dict, b: dict) -> bool:
    """Two selections' parameters alike but for the label events (a label given and undone since moves
    their hash, not the cut)."""
    return {**a, "label_events": None} == {**b, "label_events": None}
