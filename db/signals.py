"""Signals of a run: per-example values beside the score (scar_core.signals), each stored once under a
name with what made it. A name is never overwritten: saving under a used name raises SignalTaken."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from db.models import Signal, SignalValue
from db.store import Store
from scar_core.errors import ScarError


class SignalTaken(ScarError):
    """The run has a signal of this name already (the stored one is `signal`)."""

    def __init__(self, signal: Signal):
        self.signal = signal
        super().__init__(f"run {signal.run_id} has a signal named '{signal.name}' already ({signal.kind}, "
                         f"made by {signal.made_by}); choose another name")


def save_signal(store: Store, run_id: int, name: str, kind: str, settings: dict, made_by: str,
                example_ids: Sequence[int], values: Sequence[float]) -> Signal:
    """Store a signal's values (one per example id) in one transaction; nothing is stored on failure."""
    rows = [{"example_id": int(e), "value": float(v)} for e, v in zip(example_ids, values)]

    def work(session: Session) -> Signal:
        taken = session.scalar(select(Signal).where(Signal.run_id == run_id, Signal.name == name))
        if taken is not None:
            raise SignalTaken(taken)
        signal = Signal(run_id=run_id, name=name, kind=kind, settings=settings, made_by=made_by)
        session.add(signal)
        session.flush()
        if rows:
            session.execute(insert(SignalValue), [{**r, "signal_id": signal.id} for r in rows])
        return signal
    return store.transact(work)


def run_signals(store: Store, run_id: int) -> list[Signal]:
    """The run's signals, oldest first."""
    with store.read() as s:
        return list(s.scalars(select(Signal).where(Signal.run_id == run_id).order_by(Signal.id)))


def signal_frame(store: Store, run_id: int) -> pd.DataFrame:
    """example_id and one float column per signal of the run (NaN where a signal has no value)."""
    query = (select(SignalValue.example_id, Signal.name, SignalValue.value)
             .join(Signal, Signal.id == SignalValue.signal_id).where(Signal.run_id == run_id))
    with store.read() as s:
        long = pd.DataFrame(s.execute(query).all(), columns=["example_id", "name", "value"])
    if long.empty:
        return pd.DataFrame({"example_id": np.zeros(0, np.int64)})
    wide = long.pivot(index="example_id", columns="name", values="value")
    wide.columns.name = None
    return wide.reset_index()
