"""Signals beside a run's score (scar_core.signals): compute or import one, read them as table columns,
compare one with the SCAR score. The Explore, Select and Compare pages and `rank` use these."""
from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from db import browse, datasets, jobs, runs, signals as stored
from db.models import Job, Signal
from db.store import Store
from scar_core import signals
from scar_core.compare import Comparison, compare
from scar_core.clean import left_out_kind
from scar_core.errors import ScarError
from scar_core.jobs import access, runner as background
from scar_core.lm import DEFAULT_LM, Progress, load_language_model, response_nll

IFD_PAIRS_PER_SECOND_CPU = 4.0  # two LM passes of SmolLM2 per pair on a 2-core CPU (bench: bench/evidence.py)


@dataclass(frozen=True)
class Added:
    """A stored signal and what it says about its values."""

    signal: Signal
    rows: int

    def message(self) -> str:
        s = self.signal
        return f"Added signal '{s.name}' ({s.kind}) for {self.rows} example{'s' if self.rows != 1 else ''}."


def _run(store: Store, run_id: int):
    run = runs.get_run(store, run_id)
    if run is None:
        raise ScarError(f"no scoring run {run_id} in the store")
    return run


def _ranker(run):
    from scar_core.ranker import load_ranker
    return load_ranker(run.params["model"], encoder=run.params.get("encoder"))


def _save(store: Store, run_id: int, name: str, kind: str, settings: dict, made_by: str,
          ids: Sequence[int], values: np.ndarray) -> Added:
    taken = [s.name for s in stored.run_signals(store, run_id)]
    signals.check_name(name, taken + list(RESERVED))
    signal = stored.save_signal(store, run_id, name, kind, settings, made_by, ids, values)
    return Added(signal, len(ids))


# Column names of the run table (scar_core.jobs.selection.run_table) a signal may not take.
RESERVED = ("example_id", "score", "lf_contribution", "is_contribution", "source", "words", "duplicate_cluster",
            "exact_group", "flags", "findings", "left_out_by", "label", "rank")


@access.action("select", run="run_id")
def add_signal(store: Store, run_id: int, kind: str, *, made_by: str, name: str | None = None,
               k: int = signals.NOVELTY_NEIGHBOURS, exemplar_ids: Sequence[int] = (),
               exemplar_texts: Sequence[str] = (), lm: str | None = None, device: str = "auto",
               precision: str = "auto", progress: Progress | None = None) -> Added:
    """Compute a signal of `kind` (length, novelty, exemplar, ifd) for every scored example of the run
    and store it under `name` (default: the kind). Exemplars are example ids of the run and/or pasted
    response texts (encoded by the run's ranker). `progress(done, total, rate)` follows IFD's two LM
    passes (the background job of submit_signal reports it)."""
    run = _run(store, run_id)
    name = name or kind
    ids, vectors = runs.run_vectors(store, run_id, "lf")
    if kind == "novelty":  # neighbours: the rows no cleaning flag of their own leaves out (as `rank` scores them)
        own = browse.run_columns(store, run_id).set_index("example_id")["findings"].map(left_out_kind)
        reference = own.reindex(ids).isna().to_numpy()
        return _save(store, run_id, name, kind, signals.novelty_settings(k, reference), made_by, ids,
                     signals.knn_novelty(vectors, k, reference=reference))
    if kind == "exemplar":
        at = pd.Series(np.arange(len(ids)), index=ids)
        unknown = [int(e) for e in exemplar_ids if e not in at.index]
        if unknown:
            raise ScarError(f"exemplar example ids {unknown[:5]} are not scored in run {run_id}")
        parts = [vectors[at.loc[list(exemplar_ids)].to_numpy()]] if len(exemplar_ids) else []
        texts = [t for t in exemplar_texts if t.strip()]
        if texts:
            from scar_core.score import score_pairs
            parts.append(score_pairs(_ranker(run), [""] * len(texts), texts).v_lf)
        exemplars = np.concatenate(parts) if parts else np.zeros((0, vectors.shape[1] if vectors.ndim == 2 else 0))
        settings = {"exemplar_ids": [int(e) for e in exemplar_ids], "pasted": len(texts), "embedding": "v_lf",
                    "method": "cosine to the exemplars' mean"}
        return _save(store, run_id, name, kind, settings, made_by, ids,
                     signals.exemplar_similarity(vectors, exemplars))
    rows = _scored_examples(store, run_id)
    if kind == "length":
        ranker = _ranker(run)
        return _save(store, run_id, name, kind, signals.length_settings(ranker.encoder_name), made_by,
                     [r.id for r in rows], signals.response_tokens(ranker.tokenizer, [r.response for r in rows]))
    if kind == "ifd":
        model = lm or DEFAULT_LM
        language = load_language_model(model, device, precision)
        instructions = [datasets.to_core(r).ranker_instruction() for r in rows]
        responses = [r.response for r in rows]
        n = len(rows)

        def second(done: int, _total: int, rate: float) -> None:
            progress(n + done, 2 * n, rate)
        with_instruction = response_nll(language, instructions, responses,
                                        progress=(lambda d, _t, r: progress(d, 2 * n, r)) if progress else None)
        without = response_nll(language, [""] * n, responses, progress=second if progress else None)
        if np.isnan(without).all():
            raise ScarError(f"language model '{model}' gives no prompt for an empty instruction (it has no chat "
                            "template), so a response's NLL without its instruction cannot be measured; use a chat model")
        return _save(store, run_id, name, kind, {"lm": model, "formula": "PPL(response|instruction) / PPL(response)"},
                     made_by, [r.id for r in rows], signals.ifd(with_instruction, without))
    raise ScarError(f"unknown signal kind '{kind}'; choose one of {', '.join(k for k in signals.KINDS if k != 'imported')}"
                    " (or import scores from a file)")


@access.action("select", run="run_id", what="started computing the signal {kind} of run {run_id}")
def submit_signal(store: Store, run_id: int, kind: str, *, made_by: str, name: str | None = None,
                  launch: bool = True, **options) -> Job:
    """Queue a signal's computation as a background job (IFD's LM passes take minutes) and start its
    worker; the job stores the signal when it ends, or nothing when it fails or is cancelled."""
    run = _run(store, run_id)
    name = name or kind
    signals.check_name(name, [s.name for s in stored.run_signals(store, run.id)] + list(RESERVED))
    job = jobs.create_job(store, "signal", {"run_id": run_id, "kind": kind, "name": name, "made_by": made_by,
                                            "options": options, "started_by": access.acting(store)})
    if launch:
        background.start_worker(store, job.id)
    return job


def latest_signal_job(store: Store, run_id: int) -> Job | None:
    """The newest signal job of a run, if any."""
    return next((j for j in jobs.list_jobs(store, "signal", limit=200) if j.params.get("run_id") == run_id), None)


def run_signal(store: Store, job: Job, beat: background.Beat) -> None:
    """Worker body: compute and store the signal the job names, reporting the LM passes' progress."""
    p = job.params

    def progress(done: int, total: int, rate: float) -> None:
        if store.transact(lambda s: jobs.report(s, job.id, done, total, rate, f"{p['kind']}: {done}/{total}")):
            raise background.Cancelled
    store.transact(lambda s: jobs.report(s, job.id, 0, 0, None, "loading the language model"))
    added = add_signal(store, int(p["run_id"]), p["kind"], made_by=p["made_by"], name=p["name"], progress=progress,
                       **p.get("options", {}))
    beat.result = {"signal": added.signal.name, "rows": added.rows}


def ifd_estimate_seconds(store: Store, run_id: int) -> float:
    """A rough time for the IFD pass over a run on a CPU (the page shows it before starting)."""
    return runs.count_done(store, run_id) / IFD_PAIRS_PER_SECOND_CPU


def _scored_examples(store: Store, run_id: int):
    ids = set(runs.run_scores(store, run_id)[0].tolist())
    return [row for row in datasets.examples(store, _run(store, run_id).dataset_id, limit=None) if row.id in ids]


@access.action("select", run="run_id")
def import_scores(store: Store, run_id: int, path: str | Path, name: str, made_by: str,
                  label: str | None = None) -> Added:
    """Store scores from another tool (`id, score` rows keyed by the ids `score` writes) as a signal.
    Every scored example of the run needs a score and every id must be one of the run's: otherwise a
    message names the file (as `label`, e.g. an upload's own name) and the line, and nothing is stored."""
    path = Path(path)
    rows = _scored_examples(store, run_id)
    values = signals.imported_values(path, [r.content_id for r in rows], label or path.name)
    return _save(store, run_id, name, "imported", {"file": label or path.name, "rows": len(rows)}, made_by,
                 [r.id for r in rows], values)


@access.action("select", run="run_id", what="imported the signal '{name}' into run {run_id} from {filename}")
def import_upload(store: Store, run_id: int, data: bytes, filename: str, name: str, made_by: str) -> Added:
    """import_scores for an uploaded file's bytes; messages name the file as the user called it."""
    suffix = Path(filename).suffix.lower()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"scores{suffix}"
        path.write_bytes(data)
        return import_scores(store, run_id, path, name, made_by, label=filename)


def signal_summary(store: Store, run_id: int) -> pd.DataFrame:
    """One row per signal of the run: name, kind, who made it, settings, and its rank correlation and
    top-10% overlap with the SCAR score (the Select and Compare pages show it)."""
    rows, frame = [], stored.signal_frame(store, run_id)  # read once, not once per signal
    ids, scores = runs.run_scores(store, run_id)
    for s in stored.run_signals(store, run_id):
        c = compare(ids, scores, frame["example_id"].to_numpy(), frame[s.name].to_numpy())
        rows.append({"signal": s.name, "kind": s.kind, "made by": s.made_by, "rows": len(c.example_ids),
                     "Spearman with score": c.spearman, "Kendall with score": c.kendall,
                     "top 10% shared": c.overlap_at(10), "settings": str(s.settings)})
    return pd.DataFrame(rows)


def run_signals(store: Store, run_id: int) -> list[Signal]:
    return stored.run_signals(store, run_id)


def with_signals(store: Store, run_id: int, table: pd.DataFrame) -> pd.DataFrame:
    """The run table with one column per signal (NaN where a row has no value)."""
    frame = stored.signal_frame(store, run_id)
    if len(frame.columns) == 1:
        return table
    return table.merge(frame, on="example_id", how="left")


def blend_settings(store: Store, run_id: int, weights: dict[str, float]) -> dict:
    """What a blended cut on this run's signals records (scar_core.signals.blend_record)."""
    return signals.blend_record(weights, {s.name: {"kind": s.kind, "settings": s.settings}
                                          for s in stored.run_signals(store, run_id)})


def compare_signal(store: Store, run_id: int, name: str) -> Comparison:
    """A signal against the run's SCAR score: rank correlation and top-k overlap (scar_core.compare)."""
    frame = stored.signal_frame(store, run_id)
    if name not in frame.columns:
        raise ScarError(f"run {run_id} has no signal named '{name}'")
    ids, scores = runs.run_scores(store, run_id)
    return compare(ids, scores, frame["example_id"].to_numpy(), frame[name].to_numpy())
