"""Exports of a saved selection: its rows from the store, best first, in one shape, with the manifest
the library builds (scar_core.export.manifest, the same builder the CLI's `rank` uses), alone or as a
bundle with its three matched baselines (scar_core.export.matched_bundle, as `rank --baselines`)."""
from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Callable
from functools import cached_property
from pathlib import Path

import pandas as pd

from db import browse, datasets, jobs, rankers, selections
from db.models import Run, Selection
from db.store import Store
from scar_core.errors import ScarError
from scar_core.example import Example
from scar_core.export import (BundlePart, Exported, describe_input, export, manifest, manifest_json, matched_bundle,
                              to_jsonl_lines)
from scar_core.jobs import access
from scar_core.jobs.rankers import describe
from scar_core.jobs import labelling, selection as selecting
from scar_core.jobs.score import run_scope
from scar_core.labels import DEFAULT_POLICY
from scar_core.select import Selection as Cut

STORE_ONLY = ("label_events", "seed")  # saved with a selection, not part of its manifest's `selection`
ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # every bundle entry's timestamp: the same bundle gives the same bytes


class ExportPackage:
    """A selection of a run in one shape; `jsonl` and `manifest_json` build bytes only when called."""

    def __init__(self, store: Store, run: Run, selection: Selection, fmt: str, with_scores: bool,
                 table: pd.DataFrame | None = None, space: Callable[[], selecting.Space] | None = None):
        """`table`: the run's table (scar_core.jobs.selection.run_table) and `space`: its clusters at seed 0
        (selection.run_space; called only for a cut saved with coverage), when the caller has them cached."""
        self.by = access.require(store, "export", run_id=run.id)  # who it is made for (access.action)
        self.store, self.run, self.selection, self.fmt, self.with_scores = store, run, selection, fmt, with_scores
        self.dataset = datasets.get_dataset(store, run.dataset_id)
        self.table, self.space = table, space

    @cached_property
    def _selected(self) -> tuple[list[Example], list[float]]:
        at = {example_id: i for i, example_id in enumerate(self.selection.example_ids)}
        pairs = sorted(browse.selected_rows(self.store, self.run.id, self.selection.example_ids),
                       key=lambda pair: at[pair[0].id])
        return [datasets.to_core(row) for row, _ in pairs], [score for _, score in pairs]

    def rows(self) -> tuple[list[Example], list[float]]:
        """The selected examples in the order the cut kept them (best first: by the score, or by the blend
        a blended cut was made on, as `rank` writes them), with their scores (read once per package)."""
        return self._selected

    def scores(self) -> list[float] | None:
        return self.rows()[1] if self.with_scores else None

    @access.action("export", run="self.run.id", what="downloaded selection '{self.selection.name}' "
                   "v{self.selection.version} of run {self.run.id} as {self.fmt}")
    def jsonl(self) -> bytes:
        return "".join(to_jsonl_lines(self.rows()[0], self.fmt, self.scores())).encode("utf-8")

    def manifest(self) -> dict:
        d = self.dataset
        job = jobs.get_job(self.store, self.run.job_id) if self.run.job_id else None
        return manifest(self.rows()[0], self.fmt, self.with_scores,
                        inputs=[describe_input(d.path, d.sha256, d.format, d.row_count, d.example_count,
                                               len(d.rejected))],
                        ranker=describe(rankers.get_ranker(self.store, self.run.ranker_id)),
                        device=self.run.device, precision=self.run.precision, engine=self.run.engine,
                        cleaning=(job.params.get("clean") if job else None),
                        selection={k: v for k, v in self.selection.params.items() if k not in STORE_ONLY},
                        scope=run_scope(self.store, self.run), saved=self.saved())

    def saved(self) -> dict:
        """What only the store knows: which version of which saved selection, from which run, and the
        label events it saw when it was saved."""
        s = self.selection
        return {"selection_id": s.id, "name": s.name, "version": s.version, "run_id": self.run.id,
                "label_events": s.params.get("label_events")}

    def manifest_json(self) -> bytes:
        return manifest_json(self.manifest()).encode("utf-8")

    @access.action("export", run="self.run.id", what="exported selection '{self.selection.name}' "
                   "v{self.selection.version} of run {self.run.id} as {self.fmt} to {target}")
    def write(self, target: Path) -> Exported:
        """Write the JSONL and its manifest to `target` and record the export in the store."""
        target = access.writable_file(self.store, target, (browse.export_folder(self.store),))
        written = export(target, self.rows()[0], self.fmt, self.scores(), self.manifest())
        selections.record_export(self.store, str(written.path), self.fmt, written.manifest, self.run.id,
                                 self.selection.id)
        return written

    @cached_property
    def _remade(self) -> tuple[Cut, pd.DataFrame] | str:
        """The saved cut remade from its saved options (cleaning, labels, quotas, coverage, seed, blend
        weights) with the table its positions refer to, or why it cannot be: it no longer comes out as
        saved (labels, cleaning or signals changed since; its baselines would match another cut)."""
        params, chosen = self.selection.params, self.selection
        missing = [k for k in ("rule", "value", "keep_flagged", "quotas") if k not in params]
        if missing:
            return (f"'{chosen.name}' version {chosen.version} was saved without {', '.join(missing)} (an older "
                    "version of SCAR Studio, or another tool), so its cut cannot be remade for matched baselines. "
                    "Save the cut again on the Select page to download its bundle.")
        table = selecting.run_table(self.store, self.run.id) if self.table is None else self.table
        seed = int(params.get("seed", 0))
        coverage = (params.get("ordering") or {}).get("coverage", 0.0)
        space = None
        if coverage > 0:
            space = self.space() if self.space and seed == 0 else selecting.run_space(self.store, self.run.id,
                                                                                      table, seed=seed)
        applied = params.get("labels")
        cut, table = selecting.select_run(self.store, self.run.id, params["rule"], params["value"],
                                          use_labels=applied is not None,
                                          policy=applied["policy"] if applied else DEFAULT_POLICY,
                                          keep_flagged=params["keep_flagged"], quotas=params["quotas"] or None,
                                          table=table, coverage=coverage, space=space,
                                          weights=(params.get("blend") or {}).get("weights"))
        remade = json.loads(json.dumps(cut.params(), default=str))
        changed = sorted(k for k in {*remade, *params} - set(STORE_ONLY) if remade.get(k) != params.get(k))
        if table["example_id"].to_numpy()[cut.kept].tolist() != chosen.example_ids or changed:
            return (f"'{chosen.name}' version {chosen.version} no longer comes out as it was saved "
                    f"({', '.join(changed) or 'its rows'} changed since: labels, cleaning or signals moved), so its "
                    "matched baselines would match another cut. Save the cut again on the Select page to "
                    "download its bundle.")
        return cut, table

    def bundle_problem(self) -> str | None:
        """Why this selection has no matched-baselines bundle (None: it has one)."""
        return self._remade if isinstance(self._remade, str) else None

    def bundle_parts(self, name: str) -> list[BundlePart]:
        """The selection (file `name`) and its random, longest and length-matched baselines of the same
        size, cleaning, quotas and labels, seeded by the seed saved with it: what `rank --baselines` writes
        for the same options (scar_core.export.matched_bundle; a blended cut's baselines, files and evidence
        order and measure by the SCAR score, as there)."""
        if self.bundle_problem():
            raise ScarError(self.bundle_problem())
        cut, table = self._remade
        params = self.selection.params
        decided = (labelling.resolution(self.store, self.run.id, params["labels"]["policy"])
                   if params.get("labels") else None)
        per_row = table["example_id"].map(decided.decided).to_numpy(dtype=object) if decided else None
        ids = table["example_id"].to_numpy()
        found = {row.id: datasets.to_core(row) for row in datasets.examples(self.store, self.run.dataset_id,
                                                                             limit=None)}
        return matched_bundle(cut, [found[int(i)] for i in ids], table["score"].to_numpy(), self.manifest(), name,
                              vectors=selecting.run_embeddings(self.store, table, self.run.id),
                              sources=table["source"].to_numpy(dtype=object), labels=per_row,
                              seed=int(params.get("seed", 0)))

    @access.action("export", run="self.run.id", what="downloaded selection '{self.selection.name}' "
                   "v{self.selection.version} of run {self.run.id} with its matched baselines as {self.fmt}")
    def bundle(self, name: str) -> bytes:
        """The bundle as one zip: the cut's JSONL (`name`), the three baselines' (name.random.jsonl, ...)
        and one manifest (name.manifest.json) listing all four, how each was made and the evidence."""
        parts = self.bundle_parts(name)
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
            for entry, data in [*((p.name, p.jsonl()) for p in parts),
                                (f"{name}.manifest.json", manifest_json({"path": name, **parts[0].manifest}).encode())]:
                info = zipfile.ZipInfo(entry, ZIP_TIME)
                info.external_attr = 0o644 << 16
                z.writestr(info, data, compress_type=zipfile.ZIP_DEFLATED)
        return out.getvalue()
