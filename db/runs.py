"""Scoring runs and their per-example results: writing chunk by chunk, reading pages at 100k rows.

Vectors are stored as float16 little-endian bytes (`pack` / `unpack`). Reads page and filter in the
database; whole-run reads return numpy arrays of one or two columns, never ORM rows.
"""
from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from sqlalchemy import ARRAY, Integer, and_, any_, bindparam, exists, func, insert, literal, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, aliased

from db.models import Dataset, Example, Job, Result, Run
from db.store import Store
from scar_core.errors import ScarError
from scar_core.scoring_rule import BIT_STABLE_ENGINES, SCORING_RULE

VECTOR_DTYPE = np.dtype("<f2")
SORTS = ("score_desc", "score_asc", "position")
COPIED = ("score", "lf_contribution", "is_contribution", "diagnostics", "truncated_instruction",
          "truncated_response", "v_lf", "v_is")
# Per-example figures with a column of their own (sortable, read without parsing JSON); any other
# figure given to save_diagnostics is kept in the diagnostics JSON.
FIGURE_COLUMNS = ("lf_contribution", "is_contribution")


def pack(vector: np.ndarray) -> bytes:
    """A vector as compact float16 bytes."""
    return np.asarray(vector, dtype=VECTOR_DTYPE).tobytes()


def unpack(data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype=VECTOR_DTYPE).astype(np.float32)


@dataclass
class ResultFilter:
    """Which results of a run to show. Every field is optional; all given ones must hold."""

    search: str | None = None          # case-insensitive text in the instruction or the response
    score_min: float | None = None
    score_max: float | None = None
    source: str | None = None
    ids: Sequence[int] | None = None   # example ids, e.g. a lasso selection on the map


def create_run(store: Store, dataset_id: int, ranker_id: int, device: str, precision: str,
               params: dict | None = None, job_id: int | None = None, engine: str = "torch") -> Run:
    def work(session: Session) -> Run:
        run = Run(dataset_id=dataset_id, ranker_id=ranker_id, device=device, precision=precision, engine=engine,
                  rule=SCORING_RULE, params=params or {}, job_id=job_id, status="queued")
        session.add(run)
        session.flush()
        return run
    return store.transact(work)


def start_or_join(store: Store, dataset_id: int, ranker_id: int, device: str, precision: str, params: dict,
                  job_params: dict, engine: str = "torch") -> tuple[Run, bool]:
    """(the run, joined): a queued or running scoring run of the same dataset, ranker, device,
    precision, engine and sample when there is one (joined True), else a new run with its queued job. One
    transaction holding the dataset's row, so two starts at once (a double click, two servers) never
    both create a run."""
    def work(session: Session) -> tuple[Run, bool]:
        session.execute(select(Dataset.id).where(Dataset.id == dataset_id).with_for_update())
        active = session.scalars(select(Run).join(Job, Job.id == Run.job_id).where(
            Run.dataset_id == dataset_id, Run.ranker_id == ranker_id, Run.device == device,
            Run.precision == precision, Run.engine == engine, Run.rule == SCORING_RULE,
            Job.status.in_(("queued", "running"))).order_by(Run.id))
        same = next((r for r in active if r.params.get("sample") == params.get("sample")), None)
        if same is not None:
            return same, True
        job = Job(kind="score", params=job_params, status="queued")
        session.add(job)
        session.flush()
        run = Run(dataset_id=dataset_id, ranker_id=ranker_id, device=device, precision=precision, engine=engine,
                  rule=SCORING_RULE, params=params, job_id=job.id, status="queued")
        session.add(run)
        session.flush()
        job.params = {**job_params, "run_id": run.id}
        return run, False
    return store.transact(work)


def get_run(store: Store, run_id: int) -> Run | None:
    with store.read() as s:
        return s.get(Run, run_id)


def list_runs(store: Store, dataset_id: int | None = None) -> list[Run]:
    query = select(Run).order_by(Run.id.desc())
    if dataset_id is not None:
        query = query.where(Run.dataset_id == dataset_id)
    with store.read() as s:
        return list(s.scalars(query))


def fill_from_cache(store: Store, run_id: int) -> int:
    """Copy results for this run's missing examples from earlier runs with the same ranker, precision,
    engine and scoring rule (those give the same bits; none for an engine not known to score a pair
    alike whatever its batch, scar_core.scoring_rule.BIT_STABLE_ENGINES), matched by content id; returns
    how many rows were copied. No model is loaded."""
    def work(session: Session) -> int:
        run = session.get(Run, run_id)
        if run.engine not in BIT_STABLE_ENGINES:  # its scores may depend on the batch: never mixed across runs
            return 0
        earlier = list(session.scalars(select(Run.id).where(
            Run.ranker_id == run.ranker_id, Run.id != run_id, Run.precision == run.precision,
            Run.engine == run.engine, Run.rule == run.rule)))
        if not earlier:
            return 0
        prev, prev_ex, src = aliased(Result), aliased(Example), aliased(Result)
        # Look results up by content id, then example; `run_id + 0` keeps SQLite from scanning a whole
        # earlier run through the run_id index for every example instead.
        source_id = (select(func.min(prev.id)).join(prev_ex, prev_ex.id == prev.example_id)
                     .where(prev_ex.content_id == Example.content_id, (prev.run_id + 0).in_(earlier))
                     .scalar_subquery())
        rows = (select(literal(run_id), Example.id, *[getattr(src, c) for c in COPIED])
                .select_from(Example).join(src, src.id == source_id)
                .where(Example.dataset_id == run.dataset_id,
                       ~exists().where(Result.run_id == run_id, Result.example_id == Example.id)))
        count = select(func.count()).where(Result.run_id == run_id)
        before = session.scalar(count)
        session.execute(insert(Result).from_select(["run_id", "example_id", *COPIED], rows))
        return session.scalar(count) - before
    return store.transact(work)


def missing_examples(store: Store, run_id: int) -> list[Example]:
    """The examples of the run's dataset that have no result yet, in file order."""
    with store.read() as s:
        run = s.get(Run, run_id)
        if run is None:
            raise ScarError(f"no scoring run {run_id} in the store")
        done = exists().where(Result.run_id == run_id, Result.example_id == Example.id)
        return list(s.scalars(select(Example).where(Example.dataset_id == run.dataset_id, ~done)
                              .order_by(Example.position)))


def add_results(session: Session, run_id: int, rows: list[dict]) -> None:
    """Insert result rows ({example_id, score, ..., v_lf bytes}); a row already stored is kept as it was."""
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    make = pg_insert if dialect == "postgresql" else sqlite_insert
    statement = make(Result).on_conflict_do_nothing(index_elements=["run_id", "example_id"])
    session.execute(statement, [{"run_id": run_id, **row} for row in rows])


def count_done(store: Store, run_id: int) -> int:
    with store.read() as s:
        return s.scalar(select(func.count()).where(Result.run_id == run_id)) or 0


def _conditions(store: Store, run_id: int, f: ResultFilter | None) -> list:
    conditions = [Result.run_id == run_id]
    if f is None:
        return conditions
    if f.search:
        conditions.append(or_(Example.instruction.icontains(f.search, autoescape=True),
                              Example.response.icontains(f.search, autoescape=True)))
    if f.score_min is not None:
        conditions.append(Result.score >= f.score_min)
    if f.score_max is not None:
        conditions.append(Result.score <= f.score_max)
    if f.source is not None:
        conditions.append(Example.source == f.source)
    if f.ids is not None:
        conditions.append(_in_ids(store, Result.example_id, f.ids))
    return conditions


def _in_ids(store: Store, column, ids: Sequence[int]):
    """`column IN ids` as ONE bound parameter, so a lasso of 50k points stays within driver limits."""
    ids = [int(i) for i in ids]
    if store.is_sqlite:
        table = func.json_each(bindparam("ids_json", json.dumps(ids))).table_valued("value")
        return column.in_(select(table.c.value))
    return column == any_(bindparam("ids_array", ids, type_=ARRAY(Integer)))


def results_page(store: Store, run_id: int, where: ResultFilter | None = None, sort: str = "score_desc",
                 offset: int = 0, limit: int = 50) -> list[dict]:
    """One page of a run's results joined with their examples, best first by default (labels: one per
    annotator, decided by a label policy in scar_core.jobs.labelling)."""
    order = _order(sort)
    query = (select(Example.id.label("example_id"), Example.position, Example.content_id, Example.instruction,
                    Example.context, Example.response, Example.system, Example.source, Example.meta,
                    Example.flags, Result.score, Result.lf_contribution, Result.is_contribution,
                    Result.diagnostics, Result.truncated_instruction, Result.truncated_response)
             .join(Example, Example.id == Result.example_id)
             .where(and_(*_conditions(store, run_id, where))).order_by(*order).offset(offset).limit(limit))
    with store.read() as s:
        return [dict(row._mapping) for row in s.execute(query)]


def _order(sort: str) -> tuple:
    if sort not in SORTS:
        raise ScarError(f"unknown sort '{sort}'; choose one of {', '.join(SORTS)}")
    return {"score_desc": (Result.score.desc(), Example.position), "score_asc": (Result.score, Example.position),
            "position": (Example.position,)}[sort]


def result_ids(store: Store, run_id: int, where: ResultFilter | None = None, sort: str = "score_desc") -> list[int]:
    """The example ids of every result matching `where`, in results_page's order (one column)."""
    query = (select(Result.example_id).join(Example, Example.id == Result.example_id)
             .where(and_(*_conditions(store, run_id, where))).order_by(*_order(sort)))
    with store.read() as s:
        return list(s.scalars(query))


def count_results(store: Store, run_id: int, where: ResultFilter | None = None) -> int:
    query = (select(func.count()).select_from(Result).join(Example, Example.id == Result.example_id)
             .where(and_(*_conditions(store, run_id, where))))
    with store.read() as s:
        return s.scalar(query) or 0


def run_scores(store: Store, run_id: int, where: ResultFilter | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(example ids int64, scores float32) of a run, in file order: two columns, cheap at 100k rows.
    (Example ids follow file order: a dataset's examples are inserted in order in one transaction.)"""
    query = select(Result.example_id, Result.score).where(and_(*_conditions(store, run_id, where)))
    if where is not None:
        query = query.join(Example, Example.id == Result.example_id)
    with store.read() as s:
        rows = s.execute(query.order_by(Result.example_id)).all()
    ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    scores = np.fromiter((r[1] for r in rows), dtype=np.float32, count=len(rows))
    return ids, scores


def run_results(store: Store, run_id: int) -> dict[str, np.ndarray]:
    """Every result of a run as arrays in file order: example_id, score, v_lf, v_is (float32, from the
    stored float16), truncated_instruction, truncated_response. Read in keyset pages of 5000 rows."""
    cols = (Result.example_id, Result.score, Result.v_lf, Result.v_is, Result.truncated_instruction,
            Result.truncated_response)
    rows: list = []
    with store.read() as s:
        while True:
            query = select(*cols).where(Result.run_id == run_id).order_by(Result.example_id).limit(5000)
            if rows:
                query = query.where(Result.example_id > rows[-1][0])
            page = s.execute(query).all()
            if not page:
                break
            rows.extend(page)
    width = len(unpack(rows[0][2])) if rows and rows[0][2] is not None else 0
    vectors = {name: np.stack([unpack(r[k]) if r[k] is not None else np.full(width, np.nan, np.float32)
                               for r in rows]) if rows else np.zeros((0, width), np.float32)
               for name, k in (("v_lf", 2), ("v_is", 3))}
    return {"example_id": np.array([r[0] for r in rows], dtype=np.int64),
            "score": np.array([r[1] for r in rows], dtype=np.float32), **vectors,
            "truncated_instruction": np.array([bool(r[4]) for r in rows], dtype=bool),
            "truncated_response": np.array([bool(r[5]) for r in rows], dtype=bool)}

def run_vectors(store: Store, run_id: int, space: str = "lf", sample: int | None = None,
                seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(example ids, float32 matrix) of a run's v_lf or v_is vectors, optionally a seeded random sample."""
    if space not in ("lf", "is"):
        raise ScarError(f"unknown space '{space}'; choose lf or is")
    column = Result.v_lf if space == "lf" else Result.v_is
    ids, _ = run_scores(store, run_id)
    if sample is not None and sample < len(ids):
        ids = np.sort(np.random.default_rng(seed).choice(ids, size=sample, replace=False))
    found: dict[int, np.ndarray] = {}
    with store.read() as s:
        for lo in range(0, len(ids), 5000):
            part = ids[lo:lo + 5000].tolist()
            for example_id, data in s.execute(select(Result.example_id, column).where(
                    Result.run_id == run_id, _in_ids(store, Result.example_id, part))):
                if data is not None:
                    found[example_id] = unpack(data)
    ids = np.array([i for i in ids.tolist() if i in found], dtype=np.int64)
    matrix = np.stack([found[i] for i in ids.tolist()]) if len(ids) else np.zeros((0, 0), np.float32)
    return ids, matrix


def count_without_breakdown(store: Store, run_id: int) -> int:
    """Results of a run whose score breakdown has not been written yet."""
    with store.read() as s:
        return s.scalar(select(func.count()).select_from(Result).where(
            Result.run_id == run_id, Result.lf_contribution.is_(None))) or 0


def save_diagnostics(store: Store, run_id: int, example_ids: np.ndarray, figures: Mapping[str, np.ndarray]) -> None:
    """Write per-example figures of a run's results (one array per name, aligned with `example_ids`):
    names in FIGURE_COLUMNS go to their own column, the rest are merged into the diagnostics JSON.
    One transaction of bulk updates by primary key."""
    position = {int(e): k for k, e in enumerate(example_ids.tolist())}
    columns = [name for name in figures if name in FIGURE_COLUMNS]
    in_json = [name for name in figures if name not in FIGURE_COLUMNS]
    with store.read() as s:
        rows = s.execute(select(Result.id, Result.example_id, Result.diagnostics)
                         .where(Result.run_id == run_id)).all()
    updates = [{"id": rid, **{name: float(figures[name][k]) for name in columns},
                "diagnostics": {**(diag or {}), **{name: float(figures[name][k]) for name in in_json}}}
               for rid, eid, diag in rows if (k := position.get(eid)) is not None]

    def work(session: Session) -> None:
        for lo in range(0, len(updates), 5000):
            session.execute(update(Result), updates[lo:lo + 5000])

    store.transact(work)


def result_diagnostics(row: Mapping) -> dict:
    """A result row's figures as one dict (as they were given to add_results / save_diagnostics): the
    FIGURE_COLUMNS that are set, then the diagnostics JSON."""
    return {**{name: row[name] for name in FIGURE_COLUMNS if row.get(name) is not None},
            **(row.get("diagnostics") or {})}


def run_diagnostics(store: Store, run_id: int) -> list[dict]:
    """Every result's figures (result_diagnostics) of a run in file order, the order of run_results."""
    cols = (Result.example_id, *(getattr(Result, name) for name in FIGURE_COLUMNS), Result.diagnostics)
    with store.read() as s:
        rows = s.execute(select(*cols).where(Result.run_id == run_id).order_by(Result.example_id)).all()
    return [result_diagnostics(row._mapping) for row in rows]


def run_figures(store: Store, run_id: int, names: Sequence[str]) -> dict[str, np.ndarray]:
    """Named numeric figures of every result of a run as float64 arrays in file order (NaN where a row
    has none), read in the database: from their own column (FIGURE_COLUMNS) or the diagnostics JSON."""
    if not names:  # a run stored without diagnostics: nothing to read, and no query can select nothing
        return {}
    cols = [getattr(Result, name) if name in FIGURE_COLUMNS else Result.diagnostics[name].as_float()
            for name in names]
    with store.read() as s:
        rows = s.execute(select(*cols).where(Result.run_id == run_id).order_by(Result.example_id)).all()
    return {name: np.array([np.nan if r[k] is None else r[k] for r in rows], dtype=np.float64)
            for k, name in enumerate(names)}
