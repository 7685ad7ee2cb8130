"""The validation job (scar_core.jobs.validation) and its Select-page section: a curve of eval NLL (and the
judge's win rate) against the share kept, SCAR cut vs random, from a scoring run; started from the page as
a background job with its time estimate shown first, cancelled from there, its report drawn as a chart.
The model tuned is conftest's tiny random GPT-2, so a job takes seconds."""
from __future__ import annotations

import json
import time

import numpy as np
import pytest
import torch

from db import jobs
from scar_core.jobs import validation
from scar_core.jobs.runner import run_job
from scar_core.validate import Settings
from tests.conftest import score_file, style_pool
from tests.test_app import app, texts
from tests.test_validate import LongerWins, judge_url  # noqa: F401 (a fixture)

ROWS = 24
TINY = dict(steps=1, batch_size=2, learning_rate=0.01, max_tokens=48, device="cpu", precision="fp32", gen_tokens=8,
            judge_rows=3)


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def scored(store, tiny_checkpoint, tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    return score_file(store, style_pool(tmp_path, rows=ROWS), tiny_checkpoint)


def finished_validation(store, run, tiny_lm, ratios=(0.5, 1.0), **judge):
    job = validation.start_validation(store, run.id, list(ratios), settings=Settings(**TINY), tune_model=str(tiny_lm),
                                      eval_rows=4, launch=False, **judge)
    assert job.status == "queued" and job.params["estimate_s"] > 0
    done = run_job(store, job.id)
    assert done.status == "done", done.error
    return done


def test_the_job_measures_the_cut_and_random_at_each_share_and_stores_the_report(store, scored, tiny_lm):
    before = validation.estimate(store, scored.id, [0.5, 1.0], Settings(**TINY), 4)
    assert "no validation measured here yet" in before.basis
    job = finished_validation(store, scored, tiny_lm)
    report = job.result
    assert [(c["ratio"], c["subset"]) for c in report["curve"]] == [(0.5, "cut"), (0.5, "random"), (1.0, "cut"),
                                                                     (1.0, "random")]
    assert report["eval"]["rows"] == 4 and report["eval"]["source"].startswith("held-out")
    # the held-out rows are never trained on: the whole pool at 1.0 is every row but them
    assert report["curve"][2]["rows"] == report["curve"][3]["rows"] == ROWS - 4
    assert report["curve"][0]["rows"] == (ROWS - 4) // 2
    assert all(c["eval_nll"] > 0 and c["win_vs_random"] is None for c in report["curve"])
    assert "no judge endpoint" in report["win_rate_note"]
    assert job.params["points"] == report["curve"]  # stored as they came, the page draws them while it runs
    assert (job.done, job.total) == (4, 4)
    assert validation.reports(store, scored.dataset_id)[0].id == job.id
    # the next estimate uses the rates this job measured
    after = validation.estimate(store, scored.id, [0.5, 1.0], Settings(**TINY), 4)
    assert after.basis == f"rates measured by validation job {job.id} on this CPU"
    assert after.seconds != before.seconds
    frame = validation.curve_frame(report["curve"], report["untuned_nll"])
    assert frame["share kept"].tolist() == [0.5, 1.0]
    assert frame["SCAR cut"].tolist() == [report["curve"][0]["eval_nll"], report["curve"][2]["eval_nll"]]


def test_with_a_judge_the_curve_has_the_cuts_win_rate(store, scored, tiny_lm, judge_url):  # noqa: F811
    report = finished_validation(store, scored, tiny_lm, ratios=(1.0,), base_url=judge_url,
                                 judge_model="longer-wins").result
    cut = report["curve"][0]
    assert cut["subset"] == "cut" and cut["win_vs_random"]["prompts"] == 3
    assert len(LongerWins.seen) == 2 * 3  # three prompts, both orders
    assert report["judge"]["model"] == "longer-wins"
    frame = validation.curve_frame(report["curve"])
    assert frame["cut's win rate vs random"].tolist() == [cut["win_vs_random"]["win_rate"]]
    at = app("select")  # the page draws the win rate beside the NLL
    assert not at.exception and not at.error, texts(at.error)
    assert any("judge win rate" in spec for spec in chart_data(at))
    assert any("judge longer-wins" in c.value and "both orders" in c.value for c in at.caption)


def test_bad_settings_are_refused_before_a_job_is_queued(store, scored, tiny_lm):
    for kwargs, said in [(dict(ratios=[0.0]), "shares kept"), (dict(ratios=[0.5], base_url="http://x/v1"), "both"),
                         (dict(ratios=[0.5], eval_path="/no/such.jsonl"), "no such file")]:
        with pytest.raises(validation.ScarError, match=said):
            validation.start_validation(store, scored.id, settings=Settings(**TINY), launch=False, **kwargs)
    assert not jobs.list_jobs(store, validation.KIND)


def chart_data(at) -> list[str]:
    """The specs of the page's line charts (Vega-Lite JSON: axes and encodings; the data travel apart)."""
    return [c.proto.spec for c in at.get("vega_lite_chart")]


def test_the_select_page_shows_a_stored_report_as_a_chart(store, scored, tiny_lm):
    job = finished_validation(store, scored, tiny_lm)
    at = app("select")
    assert not at.exception and not at.error, texts(at.error)
    heads = [h.value for h in at.subheader]
    assert any("against share kept, SCAR cut vs random" in h for h in heads), heads
    assert at.selectbox(key="validation_shown").value == job.id
    table = next(d.value for d in at.dataframe if "share kept" in d.value.columns)
    assert table["SCAR cut"].tolist() == [c["eval_nll"] for c in job.result["curve"] if c["subset"] == "cut"]
    assert table["random"].tolist() == [c["eval_nll"] for c in job.result["curve"] if c["subset"] == "random"]
    assert any("eval NLL (lower is better)" in spec and "share of the pool kept" in spec for spec in chart_data(at))
    assert any("no judge endpoint" in c.value for c in at.caption)


def test_the_page_shows_the_estimate_starts_a_job_and_cancels_it(store, scored, tiny_lm):
    at = app("select")
    assert any("No validation of this data set yet" in i.value for i in at.info)
    at.text_input(key="val_model").set_value(str(tiny_lm))
    at.text_input(key="val_ratios").set_value("0.5 1").run()
    shown = next(i.value for i in at.info if "fine-tunes" in i.value)
    assert "4 fine-tunes" in shown and "about" in shown and "GPU is strongly suggested" in shown
    at.button(key="start_validation").click().run()
    assert any(s.startswith("Started validation job") for s in texts(at.success)), texts(at.error)
    job = jobs.list_jobs(store, validation.KIND)[0]
    assert job.params["ratios"] == [0.5, 1.0] and job.params["tune_model"] == str(tiny_lm)
    assert job.status in ("queued", "running")
    at.run()
    progress = [p for p in at.get("progress") if f"validation job {job.id}" in p.proto.text]
    assert progress and "about" in progress[0].proto.text  # the time left, from the estimate
    at.button(key=f"cancel_validation_{job.id}").click().run()
    deadline = time.time() + 90
    while jobs.get_job(store, job.id).status not in ("cancelled", "failed", "done") and time.time() < deadline:
        time.sleep(0.5)
    assert jobs.get_job(store, job.id).status == "cancelled", jobs.get_job(store, job.id).error
    assert not at.exception, at.exception


def test_an_estimate_scales_with_the_shares_kept(store, scored):
    small = validation.estimate(store, scored.id, [0.1], Settings(epochs=1.0, max_tokens=256, device="cpu"), 4)
    big = validation.estimate(store, scored.id, [0.1, 1.0], Settings(epochs=1.0, max_tokens=256, device="cpu"), 4)
    assert len(big.models) == 4 and big.seconds > small.seconds
    assert np.isclose(big.models[0], small.models[0]) and big.models[2] > big.models[0]
    judged = validation.estimate(store, scored.id, [0.1], Settings(epochs=1.0, max_tokens=256, device="cpu"), 4,
                                 judge=True)
    assert judged.seconds > small.seconds
    assert json.dumps(small.models)  # JSON-ready, the job keeps it
