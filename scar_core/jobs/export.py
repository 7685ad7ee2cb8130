"""Exports of a saved selection: its rows from the store, best first, in one shape, with the manifest
the library builds (scar_core.export.manifest, the same builder the CLI's `rank` uses)."""
from __future__ import annotations

from functools import cached_property
from pathlib import Path

from db import browse, datasets, jobs, rankers, selections
from db.models import Run, Selection
from db.store import Store
from scar_core.example import Example
from scar_core.export import Exported, describe_input, export, manifest, manifest_json, to_jsonl_lines
from scar_core.jobs import access
from scar_core.jobs.rankers import describe
from scar_core.jobs.score import run_scope


class ExportPackage:
    """A selection of a run in one shape; `jsonl` and `manifest_json` build bytes only when called."""

    def __init__(self, store: Store, run: Run, selection: Selection, fmt: str, with_scores: bool):
        access.require(store, "export", run_id=run.id)
        self.store, self.run, self.selection, self.fmt, self.with_scores = store, run, selection, fmt, with_scores
        self.dataset = datasets.get_dataset(store, run.dataset_id)

    @cached_property
    def _selected(self) -> tuple[list[Example], list[float]]:
        pairs = browse.selected_rows(self.store, self.run.id, self.selection.example_ids)
        return [datasets.to_core(row) for row, _ in pairs], [score for _, score in pairs]

    def rows(self) -> tuple[list[Example], list[float]]:
        """The selected examples best first, with their scores (read from the store once per package)."""
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
                        device=self.run.device, precision=self.run.precision,
                        cleaning=(job.params.get("clean") if job else None),
                        selection={k: v for k, v in self.selection.params.items() if k != "label_events"},
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
        written = export(target, self.rows()[0], self.fmt, self.scores(), self.manifest())
        selections.record_export(self.store, str(written.path), self.fmt, written.manifest, self.run.id,
                                 self.selection.id)
        return written
