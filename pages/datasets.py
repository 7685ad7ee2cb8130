"""Datasets: add files (upload or server path), preview and map fields, import, list/rename/delete."""
from pathlib import Path

import pandas as pd
import streamlit as st

from db import browse, datasets
from pages import shared
from scar_core import formats, intake
from scar_core.display import markdown_escape, plural, snippet
from scar_core.errors import ScarError
from scar_core.jobs import access, datasets as importing

store = shared.store()
st.header("Datasets")
add, library = st.tabs(["Add data", "Library"])
may_import, may_delete = access.may(store, "import"), access.may(store, "delete")

with add:
    uploads = st.file_uploader("Upload .jsonl, .json, .csv or .parquet files", accept_multiple_files=True,
                               type=["jsonl", "json", "csv", "parquet"], key="uploads", disabled=not may_import,
                               help=None if may_import else "Only an admin adds data sets.")
    server_path = st.text_input("…or a file path on the server (big files are read in place, not uploaded)",
                                key="server_path", placeholder="/data/corpus.jsonl", disabled=not may_import).strip()
    paths: list[tuple[Path, str | None]] = []  # (file to read, its own name when it is an upload's copy)
    saved = st.session_state.setdefault("saved_uploads", {})
    for upload in uploads or []:
        try:
            if upload.file_id not in saved:
                saved[upload.file_id] = intake.save_upload(browse.upload_folder(store), upload.name, upload.getvalue())
            paths.append((saved[upload.file_id], upload.name))
        except ScarError as e:
            shared.error(str(e))
    if server_path:
        try:
            paths.append((importing.server_file(store, server_path), None))
        except ScarError as e:
            shared.error(str(e))

    shapes = ["auto", *formats.SHAPES]
    for n, (path, upload_name) in enumerate(paths):
        name = upload_name or str(path)
        st.subheader(f"File {n + 1}: {markdown_escape(Path(name).name)}")
        if upload_name is None:
            st.code(str(path), language=None)
        try:
            seen = intake.preview(path, name=name)
        except ScarError as e:
            shared.error(str(e))
            continue
        left, right = st.columns([1, 2])
        with left:
            st.text(f"Detected format: {seen.detected or 'unknown'}")
            fmt = st.selectbox("Format", shapes, key=f"fmt_{n}", help="auto: detected from the first row")
            shape = seen.detected if fmt == "auto" else fmt
            chosen = {}
            for expected in (formats.fields(shape) if shape in formats.SHAPES else []):
                options = ["", *seen.fields]
                default = options.index(expected) if expected in options else 0
                chosen[expected] = st.selectbox(f"field for '{expected}'", options, index=default,
                                                key=f"map_{n}_{expected}")
            source = st.text_input("Source tag (default: the row's source field, else the file name)",
                                   key=f"source_{n}").strip() or None
            lenient = st.checkbox("Keep only the valid rows", value=False, key=f"lenient_{n}",
                                  help="Off (the default): a file with any bad row is refused, naming the row. "
                                  "On: the bad rows are left out and listed in the Library's validation report.")
        mapping = intake.field_map(shape or "", chosen) if shape else None
        with right:
            st.caption("Imported as: " + markdown_escape(intake.dataset_name(Path(name).name, mapping, source))
                       + (". Fields mapped: " + ", ".join(f"{k} ← {v}" for k, v in mapping.items()) if mapping
                          else ". Fields as named in the file") + (f". Source tag: {markdown_escape(source)}."
                                                                   if source else "."))
            problems = seen.problems + seen.check(None if fmt == "auto" else fmt, mapping)
            if problems:
                st.warning(f"{plural(len(problems), 'problem')} in the first {plural(len(seen.rows) + len(seen.problems), 'row')}: "
                           + ("the import stops at the first. Fix the file or the field mapping, or tick "
                              "'Keep only the valid rows'." if not lenient else "these rows will be left out."))
                for problem in problems[:10]:
                    st.caption(markdown_escape(problem))
        st.caption(f"First {plural(len(seen.rows), 'row')} as read")
        st.dataframe(seen.table(), hide_index=True, column_config={
            column: st.column_config.TextColumn(column, width="large") for column in seen.fields})
        if st.button("Import", key=f"import_{n}", type="primary"):
            known = {d.id for d in datasets.list_datasets(store)}
            try:
                dataset = importing.import_file(store, path, fmt=None if fmt == "auto" else fmt, lenient=lenient,
                                               field_map=mapping, source=source, name=name)
            except ScarError as e:
                shared.error(str(e))
            else:
                st.session_state["dataset"] = dataset.id
                if dataset.id in known:
                    st.info(f"Already imported as #{dataset.id} ({markdown_escape(dataset.name)}) with these "
                            "choices; nothing new was stored.")
                else:
                    st.success(f"Imported {markdown_escape(Path(name).name)} as data set #{dataset.id}: "
                               f"{plural(dataset.example_count, 'pair')} from {plural(dataset.row_count, 'row')}"
                               + (f", {plural(len(dataset.rejected), 'row')} left out (the Library lists them)."
                                  if dataset.rejected else "."))

with library:
    items = datasets.list_datasets(store)
    if not items:
        st.info("No datasets yet.")
    else:
        st.dataframe(pd.DataFrame([{"id": d.id, "name": d.name, "format": d.format,
                                    "fields mapped": ", ".join(f"{k} ← {v}" for k, v in
                                                               ((d.load_params or {}).get("field_map") or {}).items()),
                                    "source tag": (d.load_params or {}).get("source") or "",
                                    "rows": d.row_count, "pairs": d.example_count, "rejected": len(d.rejected),
                                    "identity": intake.identity(d.sha256, d.load_params or {})[:12],
                                    "file sha256": d.sha256[:12], "added": d.created_at} for d in items]),
                     hide_index=True)
        st.caption("identity: the file's content with how it was read (format, fields mapped, source tag, "
                   "strict or keeping the valid rows); the same file read another way is another data set.")
        dataset_id = shared.pick_dataset(store)
        dataset = datasets.get_dataset(store, dataset_id)
        if dataset.rejected:
            st.subheader("Validation report")
            report = pd.DataFrame(dataset.rejected)
            st.dataframe(report.map(lambda v: snippet(v, 200) if isinstance(v, str) else v), hide_index=True)
            st.download_button("Download rejected rows (CSV)", report.to_csv(index=False).encode(),
                               file_name=f"rejected-{dataset.id}.csv", mime="text/csv", on_click="ignore")
        else:
            st.text("Validation report: every row was accepted.")
        name_col, rename_col = st.columns([3, 1])
        new_name = name_col.text_input("Rename", value=dataset.name, key=f"rename_{dataset.id}")
        if rename_col.button("Rename", key="rename_button", disabled=not may_delete):
            try:
                importing.rename_dataset(store, dataset.id, new_name)
                st.rerun()
            except ScarError as e:
                shared.error(str(e))
        sure = st.checkbox("I want to delete this dataset with all its runs, labels and selections",
                           key=f"sure_{dataset.id}", disabled=not may_delete)
        if st.button("Delete dataset", disabled=not sure, key="delete_button"):
            importing.delete_dataset(store, dataset.id)
            st.session_state.pop("dataset", None)
            st.rerun()
