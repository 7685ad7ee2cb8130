"""How long a scoring run will take here: a rate model fitted on every finished run of this machine.

A run's wall time (submitted to finished) is split in three, from what its job recorded: cleaning (timed
by the worker, when the run cleaned its data set first), the steady scoring time (its rows' characters
over the characters per second measured after the first chunk) and the rest, its *start-up*: the worker
process starting, the ranker and its LM loading, the first chunk's warm-up and the final breakdown.
Start-up is kept per ranker and device; the steady time is divided by the rows' token count (the
ranker's own tokenizer, each text up to its 512-token limit), giving a cost per token per ranker,
device and precision; cleaning is a cost per row of the data set (it grows with the data set, so it is
not start-up). Each run's split is measured once and stored with its job (`Job.params["timing"]`). An
estimate is start-up + tokens x cost per token (+ rows x cleaning cost per row when the run will clean),
with a range from the lowest and highest of the runs it was fitted on.
"""
from __future__ import annotations

import functools
import math
import random
import socket
import statistics
from dataclasses import asdict, dataclass
from pathlib import Path

from db import datasets, jobs, runs
from db.models import Run
from db.store import Store
from scar_core.device import precision_name, resolve
from scar_core.encoders import bundled_encoder_path
from scar_core.errors import ScarError
from scar_core.jobs.score import SAMPLE_SEED, engine_here, work_size
from scar_core.ranker import read_config

TOKEN_LIMIT = 512  # the ranker's encoder reads at most this many tokens of each text
ONE_RUN_SPREAD = 0.25  # the range around an estimate fitted on a single run: one run cannot show its own spread


@dataclass(frozen=True)
class Timing:
    """One finished run, split: seconds of start-up and of steady scoring, and the tokens it scored."""

    run_id: int
    startup_s: float
    scoring_s: float
    tokens: int
    cleaning_s: float = 0.0  # 0: the run did not clean (or was timed before cleaning was told apart)
    cleaned_rows: int = 0

    @property
    def per_token_s(self) -> float:
        return self.scoring_s / max(self.tokens, 1)


@dataclass(frozen=True)
class Estimate:
    """How long scoring a data set would take here, and how that was worked out."""

    seconds: float
    low: float
    high: float
    rows: int
    tokens: int
    startup_s: float
    per_token_s: float
    startup_runs: tuple[int, ...]
    rate_runs: tuple[int, ...]
    device: str
    cleaning_s: float | None = None  # None: no cleaning asked; NaN: asked, but no run here has cleaned yet

    def how(self) -> str:
        """One sentence saying where the figure comes from."""
        def listed(ids: tuple[int, ...]) -> str:
            shown = ", ".join(str(i) for i in ids[:5]) + (f" and {len(ids) - 5} more" if len(ids) > 5 else "")
            return f"run{'s' if len(ids) > 1 else ''} {shown}"
        cleaning = "" if self.cleaning_s is None else (
            " + cleaning not yet measured on this machine (not counted)" if math.isnan(self.cleaning_s) else
            f" + cleaning {self.cleaning_s:.0f} s (the data set's rows at the rate of earlier cleaning here)")
        return (f"start-up {self.startup_s:.0f} s (worker start and ranker load; median of {listed(self.startup_runs)}) "
                f"+ {self.tokens:,} tokens at {self.per_token_s * 1000:.2f} s per 1,000 tokens (fitted on "
                f"{listed(self.rate_runs)} of this ranker and precision on this machine){cleaning}")


def estimate(store: Store, dataset_id: int, model: str, device: str = "auto", precision: str = "auto",
             rows: int | None = None, clean: bool = False) -> Estimate | None:
    """The time to score a data set (or the seeded sample of `rows` of it that a new sample run draws)
    with a ranker on this device and precision, from this machine's finished runs of the same ranker:
    None until one has finished (score a sample first)."""
    dev, dtype = resolve(device, precision)
    engine = engine_here(model, device)
    same = [(run, timing) for run in runs.list_runs(store)
            if run.params.get("model") == str(model) and run.device == str(dev) and not run.params.get("engine")
            and run.engine == engine  # another engine (CLI --engine) has other costs
            and (timing := run_timing(store, run)) is not None]
    rated = [t for run, t in same if run.precision == precision_name(dtype)]
    if not rated:
        return None
    startups = [t.startup_s for _, t in same]
    cost = sum(t.scoring_s for t in rated) / max(sum(t.tokens for t in rated), 1)  # big runs weigh most
    counts = dataset_tokens(store, dataset_id, str(model))
    ids = list(counts)  # file order, the order a new sample run draws from
    chosen = random.Random(SAMPLE_SEED).sample(ids, min(rows, len(ids))) if rows else ids
    size, tokens = len(chosen), sum(counts[i] for i in chosen)
    startup = statistics.median(startups)
    if len(same) > 1 and len(rated) > 1:
        low = min(startups) + tokens * min(t.per_token_s for t in rated)
        high = max(startups) + tokens * max(t.per_token_s for t in rated)
    else:
        low, high = (startup + tokens * cost) * (1 - ONE_RUN_SPREAD), (startup + tokens * cost) * (1 + ONE_RUN_SPREAD)
    cleaning = None
    if clean:  # every row of the data set is cleaned, sample or not
        cleaners = [t for _, t in same if t.cleaned_rows]
        per_row = sum(t.cleaning_s for t in cleaners) / sum(t.cleaned_rows for t in cleaners) if cleaners else math.nan
        cleaning = len(ids) * per_row
    extra = 0.0 if cleaning is None or math.isnan(cleaning) else cleaning
    seconds = startup + tokens * cost + extra
    return Estimate(seconds=seconds, low=min(low + extra, seconds), high=max(high + extra, seconds), rows=size,
                    tokens=tokens, startup_s=startup, per_token_s=cost,
                    startup_runs=tuple(sorted(run.id for run, _ in same)),
                    rate_runs=tuple(sorted(t.run_id for t in rated)), device=dev.type, cleaning_s=cleaning)


def run_timing(store: Store, run: Run) -> Timing | None:
    """A finished run of this machine split into start-up and steady scoring (measured once, then read
    from its job's params); None for a run that did not score rows itself in one go here: not done, on
    Ray, another host, rows copied from earlier runs, or no measured rate."""
    job = jobs.get_job(store, run.job_id) if run.job_id else None
    if job is None or job.kind != "score" or run.status != "done" or job.host != socket.gethostname():
        return None
    stored = job.params.get("timing")
    if stored is not None:
        return Timing(run.id, **stored) if stored else None
    measured = _measure(store, run, job)
    jobs.set_params(store, job.id, timing={k: v for k, v in asdict(measured).items() if k != "run_id"}
                    if measured else {})
    return measured


def _measure(store: Store, run: Run, job) -> Timing | None:
    result = job.result or {}
    speed = result.get("chars_per_s")
    if (not speed or not result.get("scored") or result.get("from_cache") or run.params.get("engine")
            or job.created_at is None or job.finished_at is None):
        return None
    counts = dataset_tokens(store, run.dataset_id, str(run.params.get("model")))
    chosen = job.params.get("sample_ids")
    ids = set(chosen) if chosen is not None else set(counts)
    rows = [row for row in datasets.examples(store, run.dataset_id, limit=None) if row.id in ids]
    chars = sum(work_size(datasets.to_core(row).ranker_instruction()) + work_size(row.response) for row in rows)
    scoring = chars / speed
    cleaning = float(job.params.get("clean_seconds") or 0.0)
    wall = (job.finished_at - job.created_at).total_seconds()
    return Timing(run.id, startup_s=round(max(wall - scoring - cleaning, 0.0), 3), scoring_s=round(scoring, 3),
                  tokens=sum(counts[row.id] for row in rows), cleaning_s=cleaning,
                  cleaned_rows=int(job.params.get("clean_rows") or 0))


def dataset_tokens(store: Store, dataset_id: int, model: str) -> dict[int, int]:
    """{example id: tokens the ranker reads of its instruction (with context) and response}."""
    dataset = datasets.get_dataset(store, dataset_id)
    return dict(_tokens(store.url, dataset_id, dataset.sha256 if dataset else "", tokenizer_folder(model)))


@functools.lru_cache(maxsize=16)
def _tokens(url: str, dataset_id: int, sha256: str, folder: str) -> tuple[tuple[int, int], ...]:
    """Cached per data set (its rows never change after import; the hash tells a reused id apart)."""
    from db.store import open_store
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    rows = datasets.examples(open_store(url), dataset_id, limit=None)
    counted = []
    for lo in range(0, len(rows), 2048):
        part = rows[lo:lo + 2048]
        texts = [datasets.to_core(r).ranker_instruction() for r in part] + [r.response for r in part]
        lengths = [len(ids) for ids in tokenizer(texts, truncation=True, max_length=TOKEN_LIMIT)["input_ids"]]
        counted += [(r.id, lengths[k] + lengths[len(part) + k]) for k, r in enumerate(part)]
    return tuple(counted)


def tokenizer_folder(model: str) -> str:
    """The folder of a checkpoint's tokenizer (this project's `tokenizer/`, a scar-tool checkpoint's own
    files), else the bundled encoder's: token counts only measure work, so a close tokenizer serves."""
    try:
        directory, _ = read_config(model)
    except ScarError:  # a checkpoint gone since its run: its counts still measure work
        return str(bundled_encoder_path())
    for folder in (directory / "tokenizer", directory):
        if (Path(folder) / "tokenizer_config.json").is_file():
            return str(folder)
    return str(bundled_encoder_path())
