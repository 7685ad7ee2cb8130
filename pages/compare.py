"""Compare runs: two scorings of one dataset side by side (rank correlation, top-k% overlap, score
against score, the rows they disagree on most). The figures are scar_core.compare's, as the CLI's."""
import pandas as pd
import streamlit as st

from db import runs
from pages import shared
from scar_core import plots
from scar_core.display import markdown_escape, snippet, visible
from scar_core.errors import ScarError
from scar_core.jobs import compare, signals

store = shared.store()
st.header("Compare runs")
items = runs.list_runs(store)
if len(items) < 2:
    st.info("Comparing needs two scoring runs over the same dataset: score a dataset twice on the Rank page "
            "(with two rankers, or one ranker at two precisions).")
    st.stop()
names = shared.run_names(store, items)
ids = list(names)
c1, c2 = st.columns(2)
run_a = c1.selectbox("Run A", ids, format_func=names.get, key="compare_a")
dataset_of = {r.id: r.dataset_id for r in items}
others = sorted((i for i in ids if i != run_a), key=lambda i: dataset_of[i] != dataset_of[run_a])  # same data first
run_b = c2.selectbox("Run B", others, format_func=names.get, key="compare_b")
beside = signals.signal_summary(store, run_a)
if len(beside):
    with st.expander(f"Run {run_a}'s signals against its SCAR score ({len(beside)})"):
        st.dataframe(beside, hide_index=True, key="compare_signals")
        st.caption("Rank correlation and the share of the top 10% both keep, per signal (scar_core.compare).")
try:
    comparison, a, b = compare.compare_runs(store, run_a, run_b)
except ScarError as e:
    shared.error(str(e))
    st.stop()

m = st.columns(4)
m[0].metric("Rows compared", len(comparison.example_ids))
m[1].metric("Spearman ρ", "n/a" if comparison.spearman is None else f"{comparison.spearman:.3f}",
            help="Rank correlation of the two runs' scores (1: same order, 0: unrelated, -1: reversed)")
m[2].metric("Kendall τ", "n/a" if comparison.kendall is None else f"{comparison.kendall:.3f}",
            help="Kendall's tau-b: the share of pairs of rows both runs order alike, minus those they order "
                 "differently")
m[3].metric("Top 10% kept by both", f"{comparison.overlap_at(10):.0%}")
if comparison.only_a or comparison.only_b:
    st.caption(f"Left out: {comparison.only_a} rows scored only by run {a.id}, {comparison.only_b} only by "
               f"run {b.id} (a run still scoring?).")

left, right = st.columns(2)
left.plotly_chart(plots.overlap_curve(comparison.overlap), key="compare_overlap")
right.plotly_chart(plots.score_scatter(comparison.example_ids, comparison.score_a, comparison.score_b,
                                       f"score in run {a.id}", f"score in run {b.id}"), key="compare_scatter")

st.subheader("Where they disagree most")
worst = comparison.disagreements
if worst.empty:
    st.info("Both runs rank every row the same.")
    st.stop()
st.caption(f"Rank 1 is the best score of {len(comparison.example_ids)}; open a row to read it.")
texts = {r["example_id"]: r for r in runs.results_page(store, a.id, runs.ResultFilter(ids=worst["example_id"].tolist()),
                                                       limit=len(worst))}
st.dataframe(pd.DataFrame({f"rank in run {a.id}": worst["rank_a"], f"rank in run {b.id}": worst["rank_b"],
                           f"score in run {a.id}": worst["score_a"].round(4),
                           f"score in run {b.id}": worst["score_b"].round(4),
                           "instruction": [snippet(texts[i]["instruction"], 100) for i in worst["example_id"]]}),
             hide_index=True, key="compare_worst")
for row in worst.itertuples():
    example = texts[row.example_id]
    title = (f"#{row.rank_a:g} in run {a.id}, #{row.rank_b:g} in run {b.id}: "
             f"{snippet(example['instruction'], 80)}")
    with st.expander(markdown_escape(title)):
        st.caption(f"Scores {row.score_a:.4f} (run {a.id}) and {row.score_b:.4f} (run {b.id}); source "
                   f"{markdown_escape(example['source'] or '(none)')}")
        st.caption("Instruction")
        st.code(visible(example["instruction"]), language=None, wrap_lines=True)
        st.caption("Response")
        st.code(visible(example["response"]), language=None, wrap_lines=True)
