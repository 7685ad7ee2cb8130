"""What an export of a saved selection holds: its rows best first and its manifest, built from the store.

The manifest records the input file's sha256, the ranker and its weights hash, code and library
versions, device and precision, the cleaning options and counts, the cut parameters with the
threshold the cut produced, and the sha256 of the selected ids (see scar_core.export).
"""
from __future__ import annotations

import json
from datetime import datetime, timezone
from functools import cached_property

from db import browse, cleaning, datasets, jobs, rankers
from db.models import Run, Selection
from db.store import Store
from scar_core.example import Example
from scar_core.export import describe_export, to_jsonl_lines


class ExportPackage:
    """A selection of a run in one shape; `jsonl` and `manifest_json` build bytes only when called."""

    def __init__(self, store: Store, run: Run, selection: Selection, fmt: str, with_scores: bool):
        self.store, self.run, self.selection, self.fmt, self.with_scores = store, run, selection, fmt, with_scores
        self.dataset = datasets.get_dataset(store, run.dataset_id)
        self.dataset_name = self.dataset.name if self.dataset else f"run-{run.id}"

    @cached_property
    def _selected(self) -> tuple[list[Example], list[float]]:
        pairs = browse.selected_rows(self.store, self.run.id, self.selection.example_ids)
        return [datasets.to_core(row) for row, _ in pairs], [score for _, score in pairs]

    def rows(self) -> tuple[list[Example], list[float]]:
        """The selected examples best first, with their scores (read from the store once per package)."""
        return self._selected

    def jsonl(self) -> bytes:
        examples, scores = self.rows()
        return "".join(to_jsonl_lines(examples, self.fmt, scores if self.with_scores else None)).encode("utf-8")

    def extra(self) -> dict:
        """Everything the manifest records beyond the rows themselves."""
        ranker = rankers.get_ranker(self.store, self.run.ranker_id)
        job = jobs.get_job(self.store, self.run.job_id) if self.run.job_id else None
        clean = (job.params.get("clean") if job else None) or {}
        return {
            "exported_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "input": {"name": self.dataset.name, "path": self.dataset.path, "sha256": self.dataset.sha256,
                      "format": self.dataset.format, "rows": self.dataset.row_count,
                      "pairs": self.dataset.example_count, "rejected": len(self.dataset.rejected),
                      "load_params": self.dataset.load_params},
            "ranker": {"name": ranker.name, "location": ranker.location, "encoder": ranker.encoder,
                       "weights_sha256": rankers.weights_sha256(ranker), "identity": ranker.identity},
            "device": self.run.device, "precision": self.run.precision, "run_id": self.run.id,
            "cleaning": {"options": clean.get("options"), "counts": clean.get("counts"),
                         "flags_in_store": cleaning.flag_counts(self.store, self.run.dataset_id)},
            "selection": {"id": self.selection.id, "name": self.selection.name},
            "cut": self.selection.params, "threshold_score": self.selection.params.get("threshold_score"),
            "order": "best first",
        }

    def manifest(self) -> dict:
        examples, _ = self.rows()
        return describe_export(examples, self.fmt, self.with_scores, self.extra())

    def manifest_json(self) -> bytes:
        return (json.dumps(self.manifest(), indent=2, default=str) + "\n").encode("utf-8")
