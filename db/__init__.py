"""The store: SQLAlchemy models plus a small repository API, one module per aggregate.

    from db import open_store, datasets, runs
    store = open_store()                      # ./scar_studio.db, $SCAR_DB_URL, or open_store(url)
    ds = datasets.import_file(store, "data.jsonl")
"""
from db.store import Store, open_store, resolve_url

__all__ = ["Store", "open_store", "resolve_url"]
