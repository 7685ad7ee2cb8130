"""Select: cut by ratio, top-k or threshold, see what the cut keeps, apply overrides and quotas, save."""
import pandas as pd
import streamlit as st

from pages import shared
from scar_core import plots
from scar_core.jobs import selection
from scar_core.select import split_stats

store, run = shared.page_run("Select", finished_only=True)


table = shared.run_table(store, run.id)
n = len(table)
scores = table["score"].to_numpy()

rule = st.radio("Cut by", ["ratio", "topk", "threshold"], horizontal=True, key="rule",
                format_func={"ratio": "ratio of the pool", "topk": "top-k rows", "threshold": "score threshold"}.get)
if rule == "ratio":
    value = st.slider("Keep this ratio", 0.01, 1.0, 0.3, 0.01, key="ratio")
elif rule == "topk":
    value = st.slider("Keep this many rows", 1, n, max(1, n // 3), key="topk")
else:
    low, high = float(scores.min()), float(scores.max())
    value = st.slider("Keep rows scoring at least", low, max(high, low + 1e-6), (low + high) / 2, key="threshold")

o1, o2 = st.columns(2)
use_labels = o1.checkbox("Apply annotator labels (keep forces in, drop forces out)", value=True, key="use_labels")
skip_flagged = o2.checkbox("Leave out rows flagged by cleaning (duplicates keep their best-scored copy)", value=True,
                           key="skip_flagged")
quotas = None
if st.checkbox("Per-source quotas", key="use_quotas"):
    counts = table["source"].fillna("(none)").value_counts()
    edited = st.data_editor(pd.DataFrame({"source": counts.index, "rows": counts.values, "max kept": counts.values}),
                            disabled=["source", "rows"], hide_index=True, key="quota_editor")
    quotas = dict(zip(edited["source"], edited["max kept"]))

cut, _ = selection.select_run(store, run.id, rule, value, use_labels=use_labels, keep_flagged=not skip_flagged,
                              quotas=quotas, table=table)
left_out = n - cut.eligible

m = st.columns(5)
m[0].metric("Kept", f"{len(cut.kept)} of {n}")
m[1].metric("Lowest kept score", "n/a" if cut.threshold is None else f"{cut.threshold:.4f}")
m[2].metric("Left out by cleaning", left_out)
m[3].metric("Overrides", f"+{cut.forced_in} / -{cut.forced_out}")
m[4].metric("Skipped by quotas", cut.quota_skipped)
st.table(split_stats(cut.mask, table["words"].to_numpy()))

c1, c2 = st.columns(2)
c1.plotly_chart(plots.histogram(scores, "Score distribution and the cut", "score", cut_at=cut.threshold),
                key="cut_hist")
c2.plotly_chart(plots.threshold_curve(scores[cut.pool], len(cut.kept) / max(cut.eligible, 1)), key="cut_curve")
c3, c4 = st.columns(2)
c3.plotly_chart(plots.kept_dropped_histogram(table["words"].to_numpy(), cut.mask,
                                             "Response length, kept vs dropped", "words"), key="cut_lengths")
c4.plotly_chart(plots.score_vs_length(scores, table["words"].to_numpy(), cut.mask), key="cut_scatter")

with st.form("save_selection"):
    name = st.text_input("Save this selection as", value=f"{rule}-{value:g}", max_chars=200)
    if st.form_submit_button("Save selection", type="primary"):
        saved = selection.save(store, run.id, name, cut, table)
        st.session_state["selection"] = saved.id
        st.success(f"Saved selection #{saved.id} with {len(cut.kept)} examples.")
