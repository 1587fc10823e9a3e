"""The audit report (`pipelines.report`): its queries on a synthetic multi-night output, and the whole report on
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

from pipelines import report_queries as q
from pipelines.moderate import run
from pipelines.report import SECTIONS, build_report, main
from transforms.write_partitions import VERDICT_SCHEMA

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
    assert len(images) == 3 and all(len(i) > 1000 for i in images)
    assert "http://" not in page and "https://" not in page  # self-contained: viewable offline
    report = build_report(str(out))
    assert report["units"] == manifest.totals["verdicts_written"]
    assert report["tables"]["dead-letters"]["records"].sum() == sum(manifest.error_counts.values())
    assert md_path.read_text().count("](report_files/") == 3
    assert all((tmp_path / "report_files" / f"{k}.png").stat().st_size > 1000 for k in ("mix", "trend", "p-unsafe"))


def _browser() -> str | None:
    """A Chromium binary (Debian's `chromium-headless-shell` from scripts/install.sh, or a full Chromium)."""
    names = ("chromium-headless-shell", "chromium", "chromium-browser", "google-chrome")
    return next((path for name in names if (path := shutil.which(name))), None)


PROBE = """<script>window.addEventListener('load', () => {
  const images = [...document.images];
  document.body.setAttribute('data-probe', JSON.stringify({
    sections: [...document.querySelectorAll('section')].map(s => s.id),
    headings: [...document.querySelectorAll('h2')].map(h => h.textContent),
    tables: document.querySelectorAll('table').length,
    images: images.map(i => [i.complete, i.naturalWidth, i.naturalHeight]),
  }));
});</script>"""


def test_the_report_renders_in_a_headless_browser_offline(nights, tmp_path):
    """The multi-night report in a real Chromium, with every host unresolvable (offline): every section is
    there, every image decodes, and a full-page screenshot is a real picture, not a blank page."""
    browser = _browser()
    if browser is None:
        pytest.skip("no Chromium on this machine (scripts/install.sh installs Debian's chromium-headless-shell)")
    html_path = tmp_path / "report.html"
    assert main([str(nights), "--html", str(html_path)]) == 0
    probe = tmp_path / "probe.html"
    probe.write_text(html_path.read_text().replace("</body>", PROBE + "</body>"))
    flags = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--host-resolver-rules=MAP * ~NOTFOUND",
             f"--user-data-dir={tmp_path / 'profile'}"]  # fmt: skip
    dom = subprocess.run([*flags, "--dump-dom", probe.as_uri()], capture_output=True, text=True, timeout=120)
    found = re.search(r'data-probe="([^"]*)"', dom.stdout)
    assert found, f"the page did not load in {browser}: {dom.stderr[-2000:]}"
    seen = json.loads(html.unescape(found.group(1)))
    assert seen["sections"] == [key for key, _ in SECTIONS]
    assert seen["headings"] == [heading for _, heading in SECTIONS]
    assert seen["tables"] == html_path.read_text().count("<table") >= 5  # every table the page has, laid out
    assert len(seen["images"]) == 3 and all(done and w >= 200 and h >= 100 for done, w, h in seen["images"])

    shot = tmp_path / "report.png"
    subprocess.run([*flags, f"--screenshot={shot}", "--window-size=1280,4000", html_path.as_uri()],
                   capture_output=True, timeout=120, check=True)  # fmt: skip
    pixels = matplotlib_image.imread(shot)
    assert pixels.shape[:2] == (4000, 1280)
    assert pixels[..., :3].std() > 0.05  # text, tables and plots, not an empty page
