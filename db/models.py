"""ORM models: everything a curation project produces, in one store (SQLite or PostgreSQL).

The schema itself is created and upgraded by the Alembic migrations in db/migrations; these
classes must match the latest migration (tests/test_store.py checks that they do).
"""
from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import (JSON, Boolean, DateTime, Float, ForeignKey, Index, Integer, LargeBinary, String, Text,
                        UniqueConstraint)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    pass


class Dataset(Base):
    """One imported file: where it came from and what the loader made of it."""

    __tablename__ = "datasets"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(512))               # source file name
    path: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    format: Mapped[str] = mapped_column(String(32))              # detected or given row shape
    row_count: Mapped[int] = mapped_column(Integer)              # rows read, valid or not
    example_count: Mapped[int] = mapped_column(Integer)
    rejected: Mapped[list] = mapped_column(JSON, default=list)   # [{"where", "field", "reason"}]
    load_params: Mapped[dict] = mapped_column(JSON, default=dict)  # fmt, lenient, field_map, source
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Example(Base):
    """One scorable pair of a dataset, in file order (`position`)."""

    __tablename__ = "examples"
    __table_args__ = (UniqueConstraint("dataset_id", "position"),
                      Index("ix_examples_dataset_source", "dataset_id", "source"))
    id: Mapped[int] = mapped_column(primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)
    content_id: Mapped[str] = mapped_column(String(64), index=True)  # scar_core.example.content_id
    instruction: Mapped[str] = mapped_column(Text)
    context: Mapped[list] = mapped_column(JSON, default=list)     # earlier turns [{"role", "content"}]
    response: Mapped[str] = mapped_column(Text)
    system: Mapped[str | None] = mapped_column(Text)
    source: Mapped[str | None] = mapped_column(String(512))
    meta: Mapped[dict] = mapped_column(JSON, default=dict)       # e.g. {"where": "line 12"}
    flags: Mapped[dict] = mapped_column(JSON, default=dict)      # cleaning flags {name: detail}, e.g. language
    duplicate_cluster: Mapped[int | None] = mapped_column(Integer)  # number of its duplicate cluster, if any
    exact_group: Mapped[int | None] = mapped_column(Integer)        # position of its first exact copy (clusters only)


class Ranker(Base):
    """A ranker checkpoint, identified by what decides its scores (weights and LM term settings, see
    scar_core.ranker.scoring_identity) and its encoder."""

    __tablename__ = "rankers"
    __table_args__ = (UniqueConstraint("weights_hash", "encoder"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(256))
    location: Mapped[str] = mapped_column(Text)                  # folder path or hub id
    identity: Mapped[str] = mapped_column("weights_hash", String(64))  # the column's first name
    encoder: Mapped[str] = mapped_column(Text)
    recipe: Mapped[dict] = mapped_column(JSON, default=dict)     # how it was trained
    metrics: Mapped[dict] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Job(Base):
    """A background job (score, map, train): its state, progress and worker."""

    __tablename__ = "jobs"
    __table_args__ = (Index("ix_jobs_status", "status"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), default="queued")  # see db.jobs.STATUSES
    params: Mapped[dict] = mapped_column(JSON, default=dict)
    result: Mapped[dict] = mapped_column(JSON, default=dict)
    done: Mapped[int] = mapped_column(Integer, default=0)
    total: Mapped[int] = mapped_column(Integer, default=0)
    rate: Mapped[float | None] = mapped_column(Float)            # units per second
    eta_s: Mapped[float | None] = mapped_column(Float)
    message: Mapped[str | None] = mapped_column(Text)            # what the worker is doing now
    error: Mapped[str | None] = mapped_column(Text)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    pid: Mapped[int | None] = mapped_column(Integer)
    host: Mapped[str | None] = mapped_column(String(256))
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Run(Base):
    """A scoring run: one dataset scored by one ranker at one precision."""

    __tablename__ = "runs"
    id: Mapped[int] = mapped_column(primary_key=True)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"), index=True)
    ranker_id: Mapped[int] = mapped_column(ForeignKey("rankers.id"), index=True)
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"))
    device: Mapped[str] = mapped_column(String(32))
    precision: Mapped[str] = mapped_column(String(16))           # resolved: fp32, bf16 or fp16
    engine: Mapped[str] = mapped_column(String(16), default="torch", server_default="torch")
    rule: Mapped[int] = mapped_column(Integer, server_default="1")  # scar_core.scoring_rule.SCORING_RULE it ran
    params: Mapped[dict] = mapped_column(JSON, default=dict)     # batch size, chunk rows, ...
    status: Mapped[str] = mapped_column(String(16), default="queued")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Result(Base):
    """The score of one example in one run; each (run, example) appears at most once."""

    __tablename__ = "results"
    __table_args__ = (UniqueConstraint("run_id", "example_id", name="uq_results_run_example"),
                      Index("ix_results_run_score", "run_id", "score"),
                      Index("ix_results_example", "example_id"))
    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    example_id: Mapped[int] = mapped_column(ForeignKey("examples.id", ondelete="CASCADE"))
    score: Mapped[float] = mapped_column(Float)
    lf_contribution: Mapped[float | None] = mapped_column(Float)   # linguistic-form share of the score
    is_contribution: Mapped[float | None] = mapped_column(Float)   # instructional-surprisal share
    diagnostics: Mapped[dict | None] = mapped_column(JSON)
    truncated_instruction: Mapped[bool] = mapped_column(Boolean, default=False)
    truncated_response: Mapped[bool] = mapped_column(Boolean, default=False)
    v_lf: Mapped[bytes | None] = mapped_column(LargeBinary)       # float16 little-endian bytes
    v_is: Mapped[bytes | None] = mapped_column(LargeBinary)


class MapPoint(Base):
    """2-D map coordinates of one example of a run, per representation space ('lf' or 'is')."""

    __tablename__ = "map_points"
    __table_args__ = (UniqueConstraint("run_id", "space", "example_id", name="uq_map_points"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    space: Mapped[str] = mapped_column(String(8))
    example_id: Mapped[int] = mapped_column(ForeignKey("examples.id", ondelete="CASCADE"))
    x: Mapped[float] = mapped_column(Float)
    y: Mapped[float] = mapped_column(Float)


class Label(Base):
    """An annotator's current verdict on an example: keep, drop or flag, with a note. Derived from the
    label history (LabelEvent): `event_id` is the event that set it."""

    __tablename__ = "labels"
    __table_args__ = (UniqueConstraint("example_id", "annotator", name="uq_labels_example_annotator"),
                      Index("ix_labels_label", "label"))
    id: Mapped[int] = mapped_column(primary_key=True)
    example_id: Mapped[int] = mapped_column(ForeignKey("examples.id", ondelete="CASCADE"))
    label: Mapped[str] = mapped_column(String(8))
    note: Mapped[str | None] = mapped_column(Text)
    annotator: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    event_id: Mapped[int | None] = mapped_column(ForeignKey("label_events.id", ondelete="SET NULL", name="fk_labels_event_id"))


class Adjudication(Base):
    """A lead's current decision on an example whose annotators disagree; it comes first in the label
    policy. Derived from the label history like Label."""

    __tablename__ = "adjudications"
    id: Mapped[int] = mapped_column(primary_key=True)
    example_id: Mapped[int] = mapped_column(ForeignKey("examples.id", ondelete="CASCADE"), unique=True)
    label: Mapped[str] = mapped_column(String(8))
    note: Mapped[str | None] = mapped_column(Text)
    lead: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    event_id: Mapped[int | None] = mapped_column(ForeignKey("label_events.id", ondelete="SET NULL"))


class LabelAction(Base):
    """One thing a person did to labels (one key, one bulk action, an adjudication, an undo): who, on
    which run, what, and how many examples it changed. Never deleted; an undo is an action of its own."""

    __tablename__ = "label_actions"
    __table_args__ = (Index("ix_label_actions_run_annotator", "run_id", "annotator"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id", ondelete="SET NULL"))
    annotator: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(16))                 # see db.labels.ACTION_KINDS
    label: Mapped[str | None] = mapped_column(String(8))
    description: Mapped[str] = mapped_column(Text)
    count: Mapped[int] = mapped_column(Integer, default=0)          # examples it changed
    undoes: Mapped[int | None] = mapped_column(ForeignKey("label_actions.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class LabelEvent(Base):
    """One change of one verdict (an annotator's label, or a lead's adjudication) on one example: the
    label history, append-only. `label` None: the verdict was withdrawn (an undo of a first label)."""

    __tablename__ = "label_events"
    __table_args__ = (Index("ix_label_events_example", "example_id"), Index("ix_label_events_action", "action_id"))
    id: Mapped[int] = mapped_column(primary_key=True)
    action_id: Mapped[int] = mapped_column(ForeignKey("label_actions.id"))
    example_id: Mapped[int] = mapped_column(ForeignKey("examples.id", ondelete="CASCADE"))
    annotator: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(16))                 # "verdict" or "adjudication"
    label: Mapped[str | None] = mapped_column(String(8))
    note: Mapped[str | None] = mapped_column(Text)
    previous_label: Mapped[str | None] = mapped_column(String(8))
    previous_note: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Selection(Base):
    """One version of a named subset of a run: the rule that chose it, its parameters and the chosen
    example ids. Saving under a used name adds a version; earlier versions stay."""

    __tablename__ = "selections"
    __table_args__ = (UniqueConstraint("run_id", "name", "version", name="uq_selections_run_name_version"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(256))
    version: Mapped[int] = mapped_column(Integer, default=1)
    rule: Mapped[str] = mapped_column(String(64))
    params: Mapped[dict] = mapped_column(JSON, default=dict)
    example_ids: Mapped[list] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Export(Base):
    """A file written from a selection (or a whole run), with its manifest."""

    __tablename__ = "exports"
    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id", ondelete="SET NULL"))
    selection_id: Mapped[int | None] = mapped_column(ForeignKey("selections.id", ondelete="SET NULL"))
    path: Mapped[str] = mapped_column(Text)
    format: Mapped[str] = mapped_column(String(32))
    manifest: Mapped[dict] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Signal(Base):
    """A per-row value beside the SCAR score in one run (response length, kNN novelty, exemplar
    similarity, IFD, an imported score), with the settings that made it and who made it."""

    __tablename__ = "signals"
    __table_args__ = (UniqueConstraint("run_id", "name", name="uq_signals_run_name"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(32))                # scar_core.signals.KINDS
    settings: Mapped[dict] = mapped_column(JSON, default=dict)
    made_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class SignalValue(Base):
    """One row's value of a signal."""

    __tablename__ = "signal_values"
    __table_args__ = (UniqueConstraint("signal_id", "example_id", name="uq_signal_values"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    signal_id: Mapped[int] = mapped_column(ForeignKey("signals.id", ondelete="CASCADE"))
    example_id: Mapped[int] = mapped_column(ForeignKey("examples.id", ondelete="CASCADE"))
    value: Mapped[float] = mapped_column(Float)


class Person(Base):
    """Someone who signs in to a team-mode server (`identity`: their e-mail, else the provider's subject)
    and their role: annotator, lead or admin (scar_core.jobs.access.ROLES)."""

    __tablename__ = "people"
    __table_args__ = (UniqueConstraint("identity", name="uq_people_identity"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    identity: Mapped[str] = mapped_column(String(256))
    role: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Assignment(Base):
    """A data set an annotator may label (leads and admins may work on every data set)."""

    __tablename__ = "assignments"
    __table_args__ = (UniqueConstraint("person_id", "dataset_id", name="uq_assignments_person_dataset"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("people.id", ondelete="CASCADE"))
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ActionLog(Base):
    """One action a person did (saved a selection, exported, deleted, assigned) or was refused: who, what,
    when. Labelling is in label_actions; this holds the rest. Never deleted."""

    __tablename__ = "action_log"
    __table_args__ = (Index("ix_action_log_created_at", "created_at"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    who: Mapped[str] = mapped_column(String(256))
    action: Mapped[str] = mapped_column(String(32))
    what: Mapped[str] = mapped_column(Text)
    allowed: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
