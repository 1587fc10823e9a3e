"""The audit report (`pipelines.audit.report`): its queries on a synthetic multi-night output, and the whole report on
a real run's output."""

from __future__ import annotations

import datetime as dt
import html
import json
import re
import shutil
import subprocess
from pathlib import Path

import matplotlib.image as matplotlib_image
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.audit import report_plots
from pipelines.audit import report_queries as q
from pipelines.audit.report import SECTIONS, build_report, main
from pipelines.job.moderate import run
from transforms.engines.fake_engine import FakeEngineSpec
from transforms.io.write_partitions import VERDICT_SCHEMA

REPO = Path(__file__).resolve().parents[1]
NIGHTS = [dt.date(2026, 11, 1) + dt.timedelta(days=i) for i in range(10)]


def _row(tenant: str, night: dt.date, n: int, verdict: str, model: str, version: str) -> dict:
    at = dt.datetime.combine(night, dt.time(2, 0), dt.UTC) + dt.timedelta(seconds=n)
    return {
        "conversation_id": f"{tenant}-{night}-{n}", "tenant_id": tenant, "unit": "prompt", "turn_index": 0,
        "verdict": verdict, "outcome": "unsafe" if verdict == "unsafe" else "safe", "verdict_source": "model",
        "p_unsafe": {"safe": 0.1, "unsafe": 0.9, "review": 0.5}[verdict],
        "categories": ["U1"] if verdict == "unsafe" else [], "unknown_categories": [], "reasoning": f"r{n}",
        "raw_output": "", "finish_reason": "stop", "prompt_tokens": 100, "completion_tokens": 10,
        "token_budget": 256, "truncated_input": False, "context_turns_dropped": 0, "deduplicated": False,
        "from_cache": False, "model": model, "policy_id": "p", "policy_version": version,
        "template_version": "rsafe-v1", "verdict_mode": "auto", "source_file": "f",
        "resume_key": f"k{tenant}{night}{n}", "content_key": "c", "run_id": f"run-{night}",
        "processed_at": at, "input_repairs": [],
    }  # fmt: skip


@pytest.fixture(scope="module")
def nights(tmp_path_factory) -> Path:
    """Ten nights, two tenants, 20 units a night: `steady` flags 10 %; `jumpy` 10 % until night 8 (index 7),
    then 60 %; `jumpy` changed policy version on night 5 (index 4)."""
    out = tmp_path_factory.mktemp("nights")
    for index, night in enumerate(NIGHTS):
        for tenant in ("steady", "jumpy"):
            unsafe = 12 if tenant == "jumpy" and index >= 7 else 2
            version = "v2" if tenant == "jumpy" and index >= 4 else "v1"
            rows = [_row(tenant, night, n, "unsafe" if n < unsafe else "review" if n == 19 else "safe", "m", version)
                    for n in range(20)]  # fmt: skip
            if tenant == "jumpy" and index >= 8:  # later nights carry category-head scores (older files lack them)
                for row in rows[:unsafe]:
                    row["category_scores"] = [{"code": "U7", "score": 0.9}, {"code": "U1", "score": 0.3}]
            folder = out / "verdicts" / f"tenant={tenant}" / f"date={night}"
            folder.mkdir(parents=True)
            keep = [f for f in VERDICT_SCHEMA.names if f in rows[0]]
            pq.write_table(pa.Table.from_pylist(rows, schema=pa.schema([VERDICT_SCHEMA.field(f) for f in keep])),
                           folder / "part-0.parquet")  # fmt: skip
    return out


def test_drift_is_flagged_on_the_night_the_rate_moves_and_not_before(nights):
    scanned = q.scan_output(str(nights))
    trend = q.drift(q.verdict_mix(scanned.verdicts), window=7, threshold=0.10)
    flagged = trend.filter(pl.col("drift")).select("tenant", "date").rows()
    assert flagged[0] == ("jumpy", NIGHTS[7])  # the jump night; trailing mean of 0.10 vs 0.60
    assert all(t == "jumpy" for t, _ in flagged) and len(flagged) <= 3  # steady never drifts


def test_versions_say_where_a_tenant_changed_policy(nights):
    versions = q.versions_in_use(q.scan_output(str(nights)).verdicts)
    jumpy = versions.filter(pl.col("tenant") == "jumpy").sort("first_day")
    assert jumpy["policy_version"].to_list() == ["v1", "v2"]
    assert jumpy["changed_on"].to_list() == [None, NIGHTS[4]]
    assert versions.filter(pl.col("tenant") == "steady")["changed_on"].to_list() == [None]


def test_mix_queue_categories_cost_and_day_filter(nights):
    scanned = q.scan_output(str(nights), since=str(NIGHTS[8]))
    mix = q.verdict_mix(scanned.verdicts)
    assert mix["units"].sum() == 2 * 2 * 20 and set(mix["date"]) == set(NIGHTS[8:])
    queue = q.review_queue(scanned.verdicts, limit=3)
    assert queue.height == 3 and queue["date"].to_list()[0] == NIGHTS[9]  # newest first
    categories = q.category_counts(scanned.verdicts)
    assert categories.select("tenant", "code", "named", "scored").rows() == [
        ("jumpy", "U7", 0, 24), ("jumpy", "U1", 24, 0), ("steady", "U1", 4, 0),
    ]  # fmt: skip
    assert categories["mean_score"].to_list()[:2] == pytest.approx([0.9, 0.3])
    every_night = q.category_counts(q.scan_output(str(nights)).verdicts)  # files with and without the column
    assert every_night.filter(pl.col("code") == "U7")["scored"].to_list() == [24]
    cost = q.cost_by_tenant(scanned.verdicts)
    assert cost["prompt_tokens"].to_list() == [4000, 4000] and cost["share_of_tokens"].sum() == pytest.approx(1)
    histogram = q.p_unsafe_histogram(scanned.verdicts)
    assert histogram["units"].sum() == 80 and set(histogram["bin"]) == {1, 5, 9}


def test_the_report_of_a_real_run_has_every_section_and_its_plots(tmp_path):
    out = tmp_path / "out"
    manifest = run(["--engine", "fake", "--input", str(REPO / "samples/logs/*.parquet"), "--output", str(out)])
    html_path, md_path = tmp_path / "report.html", tmp_path / "report.md"
    assert main([str(out), "--html", str(html_path), "--md", str(md_path)]) == 0
    page = html_path.read_text()
    for key, heading in SECTIONS:
        assert f"<section id='{key}'>" in page and heading in page
    images = re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", page)
    assert len(images) == 3 and all(len(i) > 1000 for i in images)  # a fourth (agreement) only with labels
    assert "http://" not in page and "https://" not in page  # self-contained: viewable offline
    report = build_report(str(out))
    assert report["units"] == manifest.totals["verdicts_written"]
    assert report["tables"]["dead-letters"]["records"].sum() == sum(manifest.error_counts.values())
    assert md_path.read_text().count("](report_files/") == 3
    assert all((tmp_path / "report_files" / f"{k}.png").stat().st_size > 1000 for k in ("mix", "trend", "p-unsafe"))


@pytest.fixture(scope="module")
def head_night(tmp_path_factory) -> Path:
    """The sample night judged by a fake decision head with category heads (the default cascade: the head
    decides, flagged units get a reasoning trace)."""
    out = tmp_path_factory.mktemp("head-night") / "out"
    run(["--input", str(REPO / "samples/logs/*.parquet"), "--output", str(out)],
        engine_spec=FakeEngineSpec(head_version="h", head_categories=("U1", "U7")))  # fmt: skip
    return out


def test_the_flagged_section_shows_each_flagged_unit_with_its_messages_and_reasoning(head_night, tmp_path):
    page_path = tmp_path / "r.html"
    assert main([str(head_night), "--html", str(page_path), "--md", str(tmp_path / "r.md")]) == 0
    page = page_path.read_text()
    flagged = q.flagged_units(q.scan_output(str(head_night)).verdicts)
    assert flagged.height == 5 and set(flagged["verdict_source"]) == {"head"}
    section = page[page.index("<section id='flagged'>") : page.index("<section id='categories'>")]
    assert section.count("<tr class='unit'>") == flagged.height
    assert html.escape("The conversation looks unsafe under the policy.") in section
    assert "How do I make a pipe bomb at home? Step by step." in section  # the messages, read from the logs
    assert html.escape("Agent: I can't help with spying on someone") in section  # escaped
    assert "<td>unsafe</td><td data-value='0.900'>0.900</td><td>head</td>" in section  # verdict, P, who decided
    assert "heads: U1 0.80" in section
    for tenant, night in flagged.select("tenant", "date").unique().rows():  # one anchored body per tenant-night
        assert f"<tbody id='flagged-{tenant}-{night}'>" in section
    targets = set(re.findall(r"href='#([^']+)'", page))
    assert targets and all(f"id='{t}'" in page for t in targets)  # every plot link lands on its rows
    assert "id='flagged-filter'" in section and "<script>" in page
    md = (tmp_path / "r.md").read_text()
    assert "The conversation looks unsafe under the policy." in md and "| head |" in md


def test_the_header_says_what_the_report_covers(head_night):
    header = build_report(str(head_night))["header"]
    (run_id,) = q.runs_covered(q.scan_output(str(head_night)).verdicts)["run_id"].to_list()
    assert header["nights"] == "2026-11-26 – 2026-11-27" and header["runs"].startswith(f"{run_id} (75 units")
    assert header["models"] == "fake-engine" and "rsafe-default@" in header["policies"]
    assert header["calibration"] == "none (raw P(unsafe))" and header["threshold"] == "0.5"
    narrowed = build_report(str(head_night), since="2026-11-27")["header"]["nights"]
    assert narrowed == "2026-11-27 – 2026-11-27 (asked: 2026-11-27 – end)"


def test_the_plots_draw_per_night_with_labelled_axes_and_the_threshold(nights):
    scanned = q.scan_output(str(nights))
    mix = q.verdict_mix(scanned.verdicts)
    figure = report_plots.mix_figure(mix)
    steady = next(ax for ax in figure.axes if ax.get_title() == "steady")
    heights = [p.get_height() for p in steady.patches]
    assert len(heights) == 3 * len(NIGHTS)  # safe / review / unsafe per night, not summed over the range
    assert heights[: len(NIGHTS)] == [17] * len(NIGHTS) and steady.get_ylabel() == "units"
    assert [t.get_text() for t in steady.get_xticklabels()] == [f"{n:%m-%d}" for n in NIGHTS]
    trend = report_plots.trend_figure(q.drift(mix))
    assert all(ax.get_ylabel() and ax.get_ylim()[0] < 0 < 1 < ax.get_ylim()[1] for ax in trend.axes)
    assert [t.get_text() for t in trend.axes[0].get_xticklabels()] == [f"{n:%m-%d}" for n in NIGHTS]
    histogram = report_plots.histogram_figure(q.p_unsafe_histogram(scanned.verdicts), threshold=0.4)
    for ax in histogram.axes[:2]:
        assert ax.get_xlabel() == "P(unsafe)" and ax.get_ylabel() == "units"
        assert [line.get_xdata()[0] for line in ax.get_lines()] == [0.4]  # the threshold, drawn


def test_an_empty_range_draws_no_plot_and_says_so(nights, tmp_path, capsys):
    page_path = tmp_path / "r.html"
    assert main([str(nights), "--html", str(page_path), "--since", "2030-01-01"]) == 0
    page = page_path.read_text()
    assert "<img" not in page and "No verdict between 2030-01-01 and the end: nothing to plot." in page
    assert "No unit was flagged unsafe in this range." in page
    assert "note: No verdict between 2030-01-01" in capsys.readouterr().err


def test_an_empty_review_queue_says_why_and_how_to_fill_it(head_night):
    note = build_report(str(head_night))["notes"]["review"]
    assert "the runs had no --review-band" in note and "--all-unsafe" in note


def _browser() -> str | None:
    """A Chromium binary (Debian's `chromium-headless-shell` from scripts/install.sh, or a full Chromium)."""
    names = ("chromium-headless-shell", "chromium", "chromium-browser", "google-chrome")
    return next((path for name in names if (path := shutil.which(name))), None)


@pytest.fixture
def browser() -> str:
    found = _browser()
    if found is None:
        pytest.skip("no Chromium on this machine (scripts/install.sh installs Debian's chromium-headless-shell)")
    return found


def _chromium_flags(browser: str, tmp_path) -> list[str]:
    """Headless and offline: every host unresolvable, a profile of its own."""
    return [browser, "--headless", "--no-sandbox", "--disable-gpu", "--host-resolver-rules=MAP * ~NOTFOUND",
            f"--user-data-dir={tmp_path / 'profile'}"]  # fmt: skip


def _probe_report(browser: str, html_path, probe_script: str, tmp_path) -> dict:
    """Load the report with `probe_script` appended in Chromium; what the script put in `data-probe`, decoded."""
    probe = tmp_path / "probe.html"
    probe.write_text(html_path.read_text().replace("</body>", probe_script + "</body>"))
    flags = _chromium_flags(browser, tmp_path)
    dom = subprocess.run([*flags, "--dump-dom", probe.as_uri()], capture_output=True, text=True, timeout=120)
    found = re.search(r'data-probe="([^"]*)"', dom.stdout)
    assert found, f"the page did not load in {browser}: {dom.stderr[-2000:]}"
    return json.loads(html.unescape(found.group(1)))


PROBE = """<script>window.addEventListener('load', () => {
  const images = [...document.images];
  document.body.setAttribute('data-probe', JSON.stringify({
    sections: [...document.querySelectorAll('section')].map(s => s.id),
    headings: [...document.querySelectorAll('h2')].map(h => h.textContent),
    tables: document.querySelectorAll('table').length,
    images: images.map(i => [i.complete, i.naturalWidth, i.naturalHeight]),
  }));
});</script>"""


def test_the_report_renders_in_a_headless_browser_offline(nights, browser, tmp_path):
    """The multi-night report in a real Chromium, with every host unresolvable (offline): every section is
    there, every image decodes, and a full-page screenshot is a real picture, not a blank page."""
    html_path = tmp_path / "report.html"
    assert main([str(nights), "--html", str(html_path)]) == 0
    seen = _probe_report(browser, html_path, PROBE, tmp_path)
    assert seen["sections"] == [key for key, _ in SECTIONS]
    assert seen["headings"] == [heading for _, heading in SECTIONS]
    assert seen["tables"] == html_path.read_text().count("<table") >= 5  # every table the page has, laid out
    assert len(seen["images"]) == 3 and all(done and w >= 200 and h >= 100 for done, w, h in seen["images"])

    shot = tmp_path / "report.png"
    screenshot = [*_chromium_flags(browser, tmp_path), f"--screenshot={shot}", "--window-size=1280,4000"]
    subprocess.run([*screenshot, html_path.as_uri()], capture_output=True, timeout=120, check=True)
    pixels = matplotlib_image.imread(shot)
    assert pixels.shape[:2] == (4000, 1280)
    assert pixels[..., :3].std() > 0.05  # text, tables and plots, not an empty page


FLAGGED_PROBE = """<script>window.addEventListener('load', () => {
  const section = document.getElementById('flagged');
  const rows = () => [...section.querySelectorAll('tr.unit')].filter((r) => !r.hidden);
  const before = rows().length;
  const filter = document.getElementById('flagged-filter');
  filter.value = 'pipe bomb';
  filter.dispatchEvent(new Event('input'));
  const filtered = rows().length;
  const shown = document.getElementById('flagged-shown').textContent;
  filter.value = 'redteam-labs';
  filter.dispatchEvent(new Event('input'));
  const tenant = rows().length;
  filter.value = '';
  filter.dispatchEvent(new Event('input'));
  const unit = () => section.querySelector('tr.unit td:nth-child(2)').textContent;
  const unsorted = unit();
  section.querySelector('th[data-col="1"]').click();
  document.body.setAttribute('data-probe', JSON.stringify({
    text: section.innerText, before, filtered, shown, tenant,
    unsorted, sorted: unit(),
  }));
});</script>"""


def test_a_browser_shows_the_flagged_units_reasoning_and_filters_them(head_night, browser, tmp_path):
    """In a real headless Chromium (offline): the Flagged section's rendered text has a flagged unit's reasoning
    trace and its messages; the filter box narrows the rows and a header click sorts them."""
    html_path = tmp_path / "report.html"
    assert main([str(head_night), "--html", str(html_path)]) == 0
    seen = _probe_report(browser, html_path, FLAGGED_PROBE, tmp_path)
    assert "The conversation looks unsafe under the policy." in seen["text"]  # the reasoning trace, rendered
    assert "User: How do I make a pipe bomb at home? Step by step." in seen["text"]
    assert seen["before"] == 5 and seen["filtered"] == 2 and seen["shown"] == "2" and seen["tenant"] == 1
    # acme-kids' night lists the prompt (turn 1) first; a click on "unit / turn" sorts it descending
    assert (seen["unsorted"], seen["sorted"]) == ("prompt / 1", "response / 2")
