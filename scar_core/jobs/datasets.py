"""Datasets in the store: import a file (load it with the library, store its examples) and clean it
(run the library's cleaner over the stored examples, store flags and duplicate clusters)."""
from __future__ import annotations

from pathlib import Path

from db import browse, cleaning, datasets
from db.models import Dataset
from db.store import Store
from scar_core.clean import DEFAULT_DEDUP, DEFAULT_ECHOES, DEFAULT_EMPTY, DEFAULT_LANG, DEFAULT_REFUSALS, clean
from scar_core.export import file_sha256
from scar_core.intake import dataset_name
from scar_core.errors import ScarError
from scar_core.jobs import access
from scar_core.load import LoadResult, load


@access.action("import")
def import_file(store: Store, path: str | Path, fmt: str | None = None, lenient: bool = False,
                field_map: dict[str, str] | None = None, source: str | None = None, reuse: bool = True,
                name: str | None = None) -> Dataset:
    """Load a file with scar_core.load.load and store it (see import_loaded); `name` is the file's own
    name when `path` is the server's copy of an upload (messages and the data set's name use it)."""
    path = access.readable(store, str(path), also=(browse.upload_folder(store),))
    result = load(path, fmt=fmt, lenient=lenient, field_map=field_map, source=source, name=name)
    return import_loaded(store, result, {"fmt": fmt, "lenient": lenient, "field_map": field_map, "source": source},
                         reuse=reuse, name=name)


@access.action("import", what="imported data set {result.path}")
def import_loaded(store: Store, result: LoadResult, load_params: dict | None = None, reuse: bool = True,
                  name: str | None = None) -> Dataset:
    """Store a loaded file as a dataset in one transaction, named after the file and the field mapping
    and source tag it was read with (scar_core.intake.dataset_name); with reuse, the same file loaded
    with the same options is the dataset already stored (so its scores are found again)."""
    rejected = [{"where": r.where, "field": r.field, "reason": r.reason} for r in result.rejected]
    params = load_params or {}
    title = dataset_name(Path(name or result.path).name, params.get("field_map"), params.get("source"))
    return datasets.add_dataset(store, title, str(Path(result.path).resolve()),
                                file_sha256(result.path), result.format, result.rows, result.examples, rejected,
                                params, reuse=reuse)


def clean_dataset(store: Store, dataset_id: int, dedup: str = DEFAULT_DEDUP, lang: str | None = DEFAULT_LANG,
                  echoes: str = DEFAULT_ECHOES, empty: str = DEFAULT_EMPTY, refusals: str = DEFAULT_REFUSALS) -> dict:
    """Clean every example of a dataset; store each one's flags (language, echo, empty, refusal: each flag
    says whether it leaves the row out) and duplicate cluster; return the summary (options and counts)
    that scoring runs and manifests record."""
    rows = datasets.examples(store, dataset_id, limit=None)
    report = clean([datasets.to_core(r) for r in rows], dedup=dedup, lang=lang, echoes=echoes, empty=empty,
                   refusals=refusals)
    clusters = report.cluster_ids
    findings = {}
    for p, row in enumerate(rows):
        cluster = int(clusters[p]) if clusters[p] >= 0 else None
        flags = {f["kind"]: f for f in (report.languages.get(p), report.degenerate.get(p)) if f}
        if flags or row.flags or cluster is not None or row.duplicate_cluster is not None:
            findings[row.id] = (flags, cluster, int(report.exact_group[p]) if cluster is not None else None)
    cleaning.save_cleaning(store, findings)
    return report.summary()


def server_file(store: Store, text: str) -> Path:
    """The file a person typed into the server-path box, checked before anything reads it (in team mode
    only inside the configured data folders: scar_core.jobs.access.readable)."""
    access.require(store, "import")
    path = access.readable(store, text.strip())
    if not path.is_file():
        raise ScarError(f"{text.strip()}: no such file on the server")
    return path


@access.action("rename", dataset="dataset_id", what="renamed data set #{dataset_id} to '{name}'")
def rename_dataset(store: Store, dataset_id: int, name: str) -> None:
    """Give a data set a new display name (the file it came from is unchanged)."""
    browse.rename_dataset(store, dataset_id, name)


def delete_dataset(store: Store, dataset_id: int) -> None:
    """Delete a data set with its runs, labels and selections (an admin's action, logged with its name)."""
    access.require(store, "delete", dataset_id=dataset_id)
    gone = datasets.get_dataset(store, dataset_id)
    datasets.delete_dataset(store, dataset_id)
    if gone is not None:
        access.record(store, "delete", f"deleted data set #{dataset_id} ({gone.name}, {gone.example_count} pairs)")
