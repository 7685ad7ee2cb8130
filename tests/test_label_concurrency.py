"""Labelling under contention, small and fast: bench/label_concurrency.py's two app servers (separate
processes, each its own connection pool) with annotators whose tabs on both servers label the same
rows at once, then the bench's checks against the store. Run against SQLite always and against the
test PostgreSQL server (.ci/run starts one) when $SCAR_TEST_POSTGRES_URL names it."""
from __future__ import annotations


from sqlalchemy import delete, func, select, update

from bench.label_concurrency import Outcome, Plan, bench, check, make_run
from db import labels, open_store
from db.models import Label, LabelEvent
from tests.conftest import postgres_url

# 2 servers x (2 annotators + 1 lead) x 25 actions over 50 rows: every person has a tab on each server,
# so the same person's actions race on the same rows; a few seconds of labelling at most.
SMALL = Plan(processes=2, annotators=2, actions=25, rows=50, leads=1, seed=0, timeout=60)


def _assert_nothing_lost(verdict, table: str) -> None:
    assert verdict.events_expected > 0, table
    assert verdict.events_written == verdict.events_expected, table
    assert verdict.half_applied == 0, table
    assert verdict.unknown_actions == 0, table
    assert verdict.replay_mismatches == 0, table
    assert verdict.chain_breaks == 0, table
    assert verdict.errors == 0, table
    assert not verdict.deadlocks, table
    assert verdict.ok, table


def test_two_app_servers_on_sqlite_lose_no_label_event(tmp_path):
    verdict, table = bench(f"sqlite:///{tmp_path / 'studio.db'}", SMALL)
    _assert_nothing_lost(verdict, table)
    assert verdict.deadlocks is None  # SQLite: no server count


def test_two_app_servers_on_postgresql_lose_no_label_event():
    verdict, table = bench(postgres_url(), SMALL)  # in a database of its own, dropped afterwards
    _assert_nothing_lost(verdict, table)
    assert verdict.deadlocks == 0


def test_the_checks_catch_a_half_applied_action_and_a_row_that_is_not_the_replay(tmp_path):
    """The bench's checks can fail: a store with one event of a bulk action missing, and one current
    verdict that is not what its events give, is reported as such."""
    url = f"sqlite:///{tmp_path / 'studio.db'}"
    run_id, ids = make_run(url, 50)
    store = open_store(url)
    out = Outcome(0)
    for example_ids, verdict in ((ids[:20], "keep"), (ids[:20], "drop"), ([ids[30]], "flag")):
        done = labels.record(store, run_id, "ann", example_ids, verdict, description="test")
        out.actions[done.action.id] = done.action.count
    first = min(out.actions)
    undone = labels.undo(store, run_id, "ann")  # withdraws the single flag: its row goes
    out.actions[undone.action.id] = undone.action.count

    clean = check(url, run_id, ids, [out])
    assert clean.ok and clean.events_written == clean.events_expected == 20 + 20 + 1 + 1, clean.details

    with store.write() as s:  # lose one event of the first bulk action (no current row points at it)
        s.execute(delete(LabelEvent).where(LabelEvent.id == s.scalar(
            select(func.min(LabelEvent.id)).where(LabelEvent.action_id == first))))
        s.execute(update(Label).where(Label.example_id == ids[5]).values(label="flag"))
    broken = check(url, run_id, ids, [out])
    assert not broken.ok
    assert broken.events_written == broken.events_expected - 1
    assert broken.half_applied == 1
    assert broken.replay_mismatches == 1
    assert broken.chain_breaks == 1  # the second action's event on that example names a label no event gave

