"""Many annotators labelling the same rows at once, through two app servers, against a real database.

    python bench/label_concurrency.py [--url URL] [--processes 2] [--annotators 4] [--actions 50]
                                      [--rows 200] [--leads 1] [--seed 0] [--timeout 300]

The URL comes from --url, else $SCAR_TEST_POSTGRES_URL; with neither, a throwaway PostgreSQL server
is started on 127.0.0.1 by sourcing .ci/postgres.sh (and stopped at the end). A sqlite:/// URL works
too (SQLite serialises writers). On PostgreSQL the bench works in a fresh database of its own on that
server, dropped at the end (--keep keeps it); where it may not create one it uses the URL's database.

It makes one dataset of --rows examples and one run over them, then starts --processes separate
processes (each an app server: its own Store, engine and connection pool), each running --annotators
annotator threads and --leads lead threads. Annotator thread t is the person "ann<t>" in every
process, so each person has one tab open on each app server. Everyone works on the SAME rows: each
annotator does --actions actions, mixing single verdicts (db.labels.record with one id), bulk verdicts
over 20-50 ids in random order, and undos (db.labels.undo); a lead adjudicates 1-10 rows at a time
and sometimes undoes. The db.labels functions are called directly (not the message-returning
scar_core.jobs.labelling ones) to get each action's count: the events it should have written.

Then it checks the store: label events written == the sum of the counts the processes got back;
every action's events (grouped by action id) == its count (no half-applied action); the current
`labels` and `adjudications` rows == replaying the events in id order (per (example, annotator), per
example for adjudications: the last event's label, note and id, or no row when its label is None);
each event's previous label/note == the one before it (the history chain an undo relies on). Prints
a table with p50/p95 seconds per single and bulk action and the errors, and exits 1 when a check
fails or any call raised. Bounded by --timeout; all traffic goes to the URL's server (127.0.0.1 for
the throwaway one).
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import subprocess
import sys
import threading
import time
import traceback
import uuid
from collections import Counter, defaultdict
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from sqlalchemy import create_engine, func, select, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from db import labels as store_labels  # noqa: E402
from db.models import Adjudication, Example, Label, LabelAction, LabelEvent  # noqa: E402
from db.store import open_store, resolve_url  # noqa: E402
from scar_core.labels import LABELS  # noqa: E402

@dataclass
class Plan:
    processes: int = 2
    annotators: int = 4
    actions: int = 50
    rows: int = 200
    leads: int = 1
    seed: int = 0
    timeout: float = 300.0


@dataclass
class Outcome:
    """What one process did: the actions it got back (id -> count), each call's seconds by kind,
    and its errors ("Type: first line" -> how many, plus one traceback per type)."""

    process: int
    actions: dict[int, int] = field(default_factory=dict)
    seconds: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: Counter = field(default_factory=Counter)
    tracebacks: dict[str, str] = field(default_factory=dict)
    nothing_to_undo: int = 0
    unfinished: int = 0  # actions not done by the deadline
    busy: float = 0.0    # seconds from the common start to its last thread's end


# --- the database -------------------------------------------------------------------------------

@contextmanager
def throwaway_postgres():
    """A private PostgreSQL server on 127.0.0.1, started by .ci/postgres.sh; stopped (its EXIT trap) when
    the bash holding it reads end-of-file on stdin: when this block ends, or when this process dies."""
    script = ("set -e; source .ci/postgres.sh >&2; echo \"$SCAR_TEST_POSTGRES_URL\"; "
              "read -r _ || true")
    holder = subprocess.Popen(["bash", "-c", script], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True)
    url = holder.stdout.readline().strip()
    try:
        if not url:
            raise SystemExit(f"could not start a throwaway PostgreSQL (bash exited {holder.wait(60)})")
        yield url
    finally:
        holder.stdin.close()
        try:
            holder.wait(60)
        except subprocess.TimeoutExpired:
            holder.kill()


@contextmanager
def fresh_database(url: str, keep: bool = False):
    """A new, empty database on the PostgreSQL server of `url`, dropped at the end unless `keep`; the
    URL itself when it cannot be created (no CREATEDB right) or for SQLite."""
    if make_url(url).get_backend_name() != "postgresql":
        yield url
        return
    name = f"scar_bench_{uuid.uuid4().hex[:12]}"  # a generated identifier, never user input
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as c:
            c.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as e:
        print(f"(cannot create a database of its own, {type(e).__name__}; using the URL's database)",
              file=sys.stderr)
        admin.dispose()
        yield url
        return
    try:
        yield make_url(url).set(database=name).render_as_string(hide_password=False)
    finally:
        if not keep:
            with admin.connect() as c:
                c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def make_run(url: str, rows: int) -> tuple[int, list[int]]:
    """A new dataset of `rows` examples and a run with a result for each: (run id, example ids)."""
    from db import datasets, rankers, runs
    from scar_core.example import Example as CoreExample

    store = open_store(url)
    tag = uuid.uuid4().hex
    examples = [CoreExample(instruction=f"Question {i} of {tag}?", response=f"Answer {i}.") for i in range(rows)]
    ds = datasets.add_dataset(store, "label_concurrency.jsonl", "/bench", tag + "0" * 32, "alpaca", rows, examples,
                              [], {"bench": tag}, reuse=False)
    ranker = rankers.register_ranker(store, "bench", "/bench", "b" * 64, "bench")
    run = runs.create_run(store, ds.id, ranker.id, "cpu", "fp32")
    with store.read() as s:
        ids = list(s.scalars(select(Example.id).where(Example.dataset_id == ds.id).order_by(Example.position)))
    with store.write() as session:
        runs.add_results(session, run.id, [{"example_id": i, "score": float(k)} for k, i in enumerate(ids)])
    return run.id, ids


def short_traceback(width: int = 300) -> str:
    """The exception being handled, briefly: for each exception of its chain, the frames in this
    project's code (not the libraries') and its message lines cut to `width` characters (SQLAlchemy's
    carry the SQL and its parameters)."""
    chain, te = [], traceback.TracebackException(*sys.exc_info())
    while te is not None:
        chain.append(te)
        te = te.__cause__ or (None if te.__suppress_context__ else te.__context__)
    out = []
    for te in reversed(chain):
        if out:
            out.append("  which led to:")
        for frame in te.stack:
            if frame.filename.startswith(str(ROOT)) and "/.venv/" not in frame.filename:
                out.append(f'  File "{frame.filename}", line {frame.lineno}, in {frame.name}: {(frame.line or "").strip()}')
        for line in "".join(te.format_exception_only()).splitlines():
            if line.startswith(("[SQL", "[parameters", "(Background")):
                continue
            out.append("    " + (line if len(line) <= width else line[:width] + " ..."))
    return "\n".join(out)


# --- one app server -----------------------------------------------------------------------------

def _annotator(store, run_id: int, ids: list[int], name: str, plan: Plan, rng: random.Random, out: Outcome,
               lock: threading.Lock, deadline: float, lead: bool) -> None:
    """One person's tab: `plan.actions` actions (a lead's: half as many), timed, every error counted."""
    for k in range(plan.actions // 2 if lead else plan.actions):
        if time.monotonic() > deadline:
            with lock:
                out.unfinished += (plan.actions // 2 if lead else plan.actions) - k
            return
        roll = rng.random()
        verdict = rng.choice(LABELS)
        note = rng.choice((None, None, None, "unsure", "typo"))
        if lead:
            kind = "lead-undo" if roll < 0.15 else "adjudicate"
            chosen = rng.sample(ids, rng.randint(1, min(10, len(ids))))
        else:
            kind = "undo" if roll < 0.15 else ("bulk" if roll < 0.40 else "single")
            chosen = rng.sample(ids, rng.randint(min(20, len(ids)), min(50, len(ids)))) if kind == "bulk" \
                else [rng.choice(ids)]
        start = time.perf_counter()
        try:
            if kind in ("undo", "lead-undo"):
                done = store_labels.undo(store, run_id, name)
            else:
                n = len(chosen)
                what = (f"decided {n} example{'s' if n != 1 else ''} {verdict} as lead" if lead
                        else f"labelled {n} example{'s' if n != 1 else ''} {verdict}")
                done = store_labels.record(store, run_id, name, chosen, verdict, note, description=what,
                                           adjudicate=lead)
        except Exception as e:  # a user would see this: count it, keep one traceback per kind of error
            key = f"{kind}: {type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''}"
            with lock:
                out.errors[key] += 1
                out.tracebacks.setdefault(f"{kind}: {type(e).__name__}", short_traceback())
            continue
        elapsed = time.perf_counter() - start
        with lock:
            out.seconds[kind].append(elapsed)
            if done is None:
                out.nothing_to_undo += 1
            else:
                out.actions[done.action.id] = done.action.count


def app_server(url: str, run_id: int, ids: list[int], process: int, plan: Plan, start, results) -> None:
    """One app server (its own process, Store and connection pool): annotator and lead threads that
    start together with the other processes' (the barrier `start`). Puts its Outcome on `results`."""
    out = Outcome(process)
    try:
        store = open_store(url)
        lock = threading.Lock()
        start.wait(timeout=120)
        deadline = time.monotonic() + plan.timeout
        threads = []
        for t in range(plan.annotators + plan.leads):
            lead = t >= plan.annotators
            name = f"lead{t - plan.annotators}" if lead else f"ann{t}"
            rng = random.Random(f"{plan.seed}/{process}/{t}")
            threads.append(threading.Thread(target=_annotator, name=name, daemon=True,
                                            args=(store, run_id, ids, name, plan, rng, out, lock, deadline, lead)))
        began = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(max(1.0, deadline - time.monotonic() + 30))
        out.busy = time.perf_counter() - began
        if any(thread.is_alive() for thread in threads):
            out.errors["threads still running past the deadline"] += 1
        store.dispose()
    except Exception as e:
        out.errors[f"process: {type(e).__name__}: {e}"] += 1
        out.tracebacks.setdefault(f"process: {type(e).__name__}", short_traceback())
    out.seconds = dict(out.seconds)
    results.put(out)


def drive(url: str, run_id: int, ids: list[int], plan: Plan) -> list[Outcome]:
    """Run `plan.processes` app servers (spawned: nothing shared but the database) to the end."""
    ctx = multiprocessing.get_context("spawn")
    start, results = ctx.Barrier(plan.processes), ctx.Queue()
    procs = [ctx.Process(target=app_server, args=(url, run_id, ids, p, plan, start, results), daemon=True)
             for p in range(plan.processes)]
    for proc in procs:
        proc.start()
    outcomes = []
    limit = time.monotonic() + plan.timeout + 180  # start-up, the deadline, the last calls
    while len(outcomes) < plan.processes and time.monotonic() < limit:
        try:
            outcomes.append(results.get(timeout=1))
        except Exception:
            if all(not proc.is_alive() for proc in procs) and results.empty():
                break
    for proc in procs:
        proc.join(5)
        if proc.is_alive():
            proc.kill()
            proc.join(5)
    for p in sorted(set(range(plan.processes)) - {o.process for o in outcomes}):
        lost = Outcome(p)
        lost.errors["process died or hung: no outcome"] += 1
        outcomes.append(lost)
    return sorted(outcomes, key=lambda o: o.process)


# --- the checks ---------------------------------------------------------------------------------

@dataclass
class Verdict:
    """What the store holds after the run, against what the processes were told."""

    actions: int
    events_expected: int
    events_written: int
    half_applied: int       # actions whose events != their count
    unknown_actions: int    # actions a process got back that are not stored with that count
    replay_mismatches: int  # current rows != replaying the events
    chain_breaks: int       # events whose previous label/note is not the one before them
    undone_twice: int       # actions undone by more than one undo
    deadlocks: int | None   # the PostgreSQL server's count for the bench's database (None: SQLite)
    errors: int
    details: list[str]

    @property
    def ok(self) -> bool:
        return (self.events_written == self.events_expected and self.half_applied == 0 and self.unknown_actions == 0
                and self.replay_mismatches == 0 and self.chain_breaks == 0 and self.errors == 0 and not self.deadlocks)


def check(url: str, run_id: int, ids: list[int], outcomes: list[Outcome]) -> Verdict:
    store = open_store(url)
    told = {a: n for o in outcomes for a, n in o.actions.items()}
    details = []
    with store.read() as s:
        stored = dict(s.execute(select(LabelAction.id, LabelAction.count).where(LabelAction.run_id == run_id)).all())
        per_action = dict(s.execute(select(LabelEvent.action_id, func.count(LabelEvent.id))
                                    .join(LabelAction, LabelAction.id == LabelEvent.action_id)
                                    .where(LabelAction.run_id == run_id).group_by(LabelEvent.action_id)).all())
        on_examples = s.scalar(select(func.count(LabelEvent.id)).where(LabelEvent.example_id.in_(ids)))
        events = s.execute(select(LabelEvent.id, LabelEvent.example_id, LabelEvent.annotator, LabelEvent.kind,
                                  LabelEvent.label, LabelEvent.note, LabelEvent.previous_label,
                                  LabelEvent.previous_note).where(LabelEvent.example_id.in_(ids))
                           .order_by(LabelEvent.id)).all()
        rows = {(r.example_id, r.annotator): (r.label, r.note, r.event_id)
                for r in s.scalars(select(Label).where(Label.example_id.in_(ids)))}
        decisions = {(r.example_id, None): (r.label, r.note, r.event_id)
                     for r in s.scalars(select(Adjudication).where(Adjudication.example_id.in_(ids)))}
        undoes = Counter(s.scalars(select(LabelAction.undoes).where(LabelAction.run_id == run_id,
                                                                    LabelAction.undoes.is_not(None))))
        deadlocks = None if store.is_sqlite else int(s.scalar(text(
            "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()")) or 0)
    written = sum(per_action.values())
    if on_examples != written:
        details.append(f"{on_examples} events on the run's examples but {written} in the run's actions")
    half = [a for a, n in stored.items() if per_action.get(a, 0) != n]
    for a in half[:5]:
        details.append(f"half-applied: action {a} has count {stored[a]} but {per_action.get(a, 0)} events")
    unknown = [a for a, n in told.items() if stored.get(a) != n]
    for a in unknown[:5]:
        details.append(f"action {a}: a process was told count {told[a]}, the store holds {stored.get(a)}")
    replayed: dict[tuple, tuple] = {}
    breaks = 0
    for e in events:
        key = (e.example_id, e.annotator if e.kind == "verdict" else None)
        before = replayed.get(key, (None, None, None))[:2]
        if (e.previous_label, e.previous_note) != before:
            breaks += 1
            if breaks <= 5:
                details.append(f"chain break: event {e.id} ({key}) says previous {e.previous_label}/{e.previous_note}, "
                               f"the event before it left {before[0]}/{before[1]}")
        replayed[key] = (e.label, e.note, e.id)
    expected = {k: v for k, v in replayed.items() if v[0] is not None}
    current = {**rows, **decisions}
    mismatches = [k for k in expected.keys() | current.keys() if expected.get(k) != current.get(k)]
    for k in sorted(mismatches, key=str)[:5]:
        details.append(f"replay mismatch at {k}: events give {expected.get(k)}, the store holds {current.get(k)}")
    twice = [a for a, n in undoes.items() if n > 1]
    if twice:
        details.append(f"undone more than once: actions {twice[:5]}")
    return Verdict(actions=len(stored), events_expected=sum(told.values()), events_written=written,
                   half_applied=len(half), unknown_actions=len(unknown), replay_mismatches=len(mismatches),
                   chain_breaks=breaks, undone_twice=len(twice), deadlocks=deadlocks,
                   errors=sum(sum(o.errors.values()) for o in outcomes), details=details)


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def report(plan: Plan, url: str, outcomes: list[Outcome], verdict: Verdict) -> str:
    seconds = defaultdict(list)
    for o in outcomes:
        for kind, values in o.seconds.items():
            seconds[kind].extend(values)
    backend = make_url(url).get_backend_name()
    calls = sum(len(v) for v in seconds.values())

    def ms(kind: str) -> str:
        v = seconds.get(kind, [])
        return (f"p50 {percentile(v, .5):.4f} s, p95 {percentile(v, .95):.4f} s over {len(v)}" if v else "none")

    lines = [f"label concurrency on {backend} ({make_url(url).render_as_string(hide_password=True)})",
             f"  processes (app servers)      {plan.processes}",
             f"  annotators per process       {plan.annotators} (+{plan.leads} lead); each person has a tab on "
             f"every server",
             f"  actions per annotator        {plan.actions} (lead: {plan.actions // 2}) over {plan.rows} shared rows",
             f"  calls made / actions stored  {calls} / {verdict.actions} "
             f"(undo with nothing to undo: {sum(o.nothing_to_undo for o in outcomes)}; "
             f"not done by the deadline: {sum(o.unfinished for o in outcomes)})",
             f"  events written / expected    {verdict.events_written} / {verdict.events_expected}"
             f"{'' if verdict.events_written == verdict.events_expected else '   <-- FAIL'}",
             f"  half-applied actions         {verdict.half_applied}{'' if not verdict.half_applied else '   <-- FAIL'}",
             f"  counts not as told           {verdict.unknown_actions}{'' if not verdict.unknown_actions else '   <-- FAIL'}",
             f"  replay mismatches            {verdict.replay_mismatches}"
             f"{'' if not verdict.replay_mismatches else '   <-- FAIL'}",
             f"  history chain breaks         {verdict.chain_breaks}{'' if not verdict.chain_breaks else '   <-- FAIL'}",
             f"  actions undone twice         {verdict.undone_twice}",
             f"  deadlocks (server's count)   "
             f"{'n/a (SQLite)' if verdict.deadlocks is None else verdict.deadlocks}{'   <-- FAIL' if verdict.deadlocks else ''}",
             f"  single label action          {ms('single')}",
             f"  bulk action (20-50 ids)      {ms('bulk')}",
             f"  undo                         {ms('undo')}",
             f"  adjudication (1-10 ids)      {ms('adjudicate')}",
             f"  errors                       {verdict.errors}{'' if not verdict.errors else '   <-- FAIL'}",
             f"  labelling wall time          {max(o.busy for o in outcomes):.1f} s (slowest process)",
             f"  result                       {'OK' if verdict.ok else 'FAILED'}"]
    for o in outcomes:
        for key, n in o.errors.most_common():
            lines.append(f"    process {o.process}: {n} x {key}")
    lines += [f"    {d}" for d in verdict.details]
    return "\n".join(lines)


def bench(url: str, plan: Plan, keep: bool = False) -> tuple[Verdict, str]:
    """The whole bench on the server or file of `url`: (the verdict, the printed table)."""
    with fresh_database(resolve_url(url), keep) as db_url:
        store = open_store(db_url)  # migrates once here, before the app servers open it
        run_id, ids = make_run(db_url, plan.rows)
        outcomes = drive(db_url, run_id, ids, plan)
        verdict = check(db_url, run_id, ids, outcomes)
        table = report(plan, db_url, outcomes, verdict)
        tracebacks = {k: v for o in outcomes for k, v in o.tracebacks.items()}
        if tracebacks:
            table += "\n\nfirst traceback of each error:\n" + "\n".join(f"--- {k}\n{v}" for k, v in tracebacks.items())
        store.dispose()
    return verdict, table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", help="database URL (default $SCAR_TEST_POSTGRES_URL, else a throwaway PostgreSQL)")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--annotators", type=int, default=4, help="annotator threads per process")
    parser.add_argument("--leads", type=int, default=1, help="lead threads per process")
    parser.add_argument("--actions", type=int, default=50, help="actions per annotator")
    parser.add_argument("--rows", type=int, default=200, help="examples everyone labels")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=300, help="seconds the annotators may take in all")
    parser.add_argument("--keep", action="store_true", help="keep the bench's PostgreSQL database")
    args = parser.parse_args(argv)
    if not (1 <= args.processes <= 16 and 1 <= args.annotators <= 64 and 0 <= args.leads <= 8
            and 1 <= args.actions <= 10_000 and 50 <= args.rows <= 1_000_000 and 0 < args.timeout <= 3600):
        parser.error("out of bounds: processes 1-16, annotators 1-64, leads 0-8, actions 1-10000, "
                     "rows 50-1000000, timeout up to 3600 s")
    plan = Plan(args.processes, args.annotators, args.actions, args.rows, args.leads, args.seed, args.timeout)
    url = args.url or os.environ.get("SCAR_TEST_POSTGRES_URL")
    if url:
        verdict, table = bench(url, plan, args.keep)
    else:
        with throwaway_postgres() as server:
            verdict, table = bench(server, plan, args.keep)
    print(table, flush=True)
    return 0 if verdict.ok else 1


if __name__ == "__main__":
    sys.exit(main())
