"""`adbench report`: the HTML file opened in headless Chromium, asserting on the rendered page."""

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from adbench import registry
from adbench.cli import main
from adbench.data.mmad import read_mmad
from adbench.model import Model, OutputKind
from adbench.runner import RunSpec, run
from adbench.schema import Box, ParseStatus, Response
from adbench.task import QuestionTask
from tests.helpers import hash_index, write_mini_mmad

registry.register_model("staged", "tests.test_report:StagedModel", "test model")
registry.register_task("report-mini", "tests.test_report:boxed_task", "test task")

INJECTION = ('<script>document.body.setAttribute("data-pwned", "1")</script>'
             '<img src=x onerror="document.body.setAttribute(\'data-pwned\', \'2\')">')
GT_BOX = (4, 4, 12, 10)  # write_mini_mmad's masks are rows 4..9, columns 4..11
PRED_BOX = (2, 3, 20, 18)


def read_boxed(root):
    """The mini suite with GT boxes on anomalous samples (MMAD's reader leaves them empty)."""
    samples = read_mmad(root)
    for s in samples:
        if s.label == 1:
            s.boxes = [Box(*GT_BOX, label="crack")]
    return samples


def boxed_task():
    return QuestionTask("report-mini", "mini suite with boxes", read_boxed)


class StagedModel(Model):
    """A reasoning model stand-in: stages, a predicted box, hostile text, failures and unparsable replies."""

    name = "staged"
    output = OutputKind.GENERATIVE

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def predict(self, queries):
        out = []
        for q in queries:
            k = hash_index(q.id, 6)
            if k == 0:
                out.append(Response.failure(f"timeout <b>after</b> 30 s {INJECTION}"))
            elif k == 1:
                out.append(Response(text="I cannot tell.", parse_status=ParseStatus.UNPARSED))
            else:
                stages = {"think": f"Region at the top left looks odd {INJECTION}", "rethink": "On closer look: a crack.",
                          "answer": "A"}
                out.append(Response(text=f"<think>...</think> {INJECTION} The answer is A.", answer="A",
                                    parse_status=ParseStatus.PARSED, stages=stages, boxes=[Box(*PRED_BOX, label="crack")]))
        return out


CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail("chromium is not installed; .ci/run installs Debian's chromium before the tests")
        pytest.skip("chromium not installed (apt-get install chromium): the HTML report is not checked in a browser")
    return exe


def render_dom(html: Path, fragment: str, tmp_path: Path) -> str:
    """The page's DOM after its scripts ran (virtual time lets every image load)."""
    profile = tmp_path / f"profile-{abs(hash(fragment))}"
    cmd = [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=5000", "--dump-dom",
           html.resolve().as_uri() + (f"#{fragment}" if fragment else "")]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    return p.stdout


def cards(dom: str) -> list[str]:
    """The HTML of each rendered sample card."""
    parts = re.split(r'(?=<div class="card )', dom)
    return [p.split('<p id="img-status"')[0] for p in parts[1:]]


def attr(dom: str, elem_id: str, name: str) -> str:
    m = re.search(rf'<[^>]*\bid="{elem_id}"[^>]*>', dom)
    assert m, elem_id
    v = re.search(rf'\b{name}="([^"]*)"', m.group(0))
    assert v, (elem_id, name, m.group(0))
    return v.group(1)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    base = tmp_path_factory.mktemp("report")
    data = write_mini_mmad(base / "data", datasets=("DS-A", "DS-B"), n_good=5, n_bad=5)
    run_dir = run(RunSpec(model="staged", task="report-mini", data_root=data, out=base / "runs", progress=False)).run_dir
    records = [json.loads(x) for x in (run_dir / "samples.jsonl").read_text().splitlines()]
    # images that went missing after the run: the report must show placeholders naming them
    missing_query = next(r["image"] for r in records if r["dataset"] == "DS-B" and r["label"] == 0)
    missing_ref = next(r["references"][0] for r in records if r["dataset"] == "DS-A")
    Path(missing_query).unlink()
    Path(missing_ref).unlink()
    out = base / "report.html"
    assert main(["report", str(run_dir), "--out", str(out)]) == 0
    return {"html": out, "records": records, "run_dir": run_dir, "missing": [missing_query, missing_ref]}


def test_report_file_is_self_contained_and_escapes_model_text(report):
    text = report["html"].read_text(encoding="utf-8")
    # the hostile text is in the file only as JSON with < and > escaped
    assert "<script>document.body" not in text and "<img src=x" not in text
    assert "\\u003cimg src=x onerror=" in text
    assert not re.search(r'(src|href)="(https?:)?//', text)  # no network resources
    assert text.count("data:image/jpeg;base64,") >= 10
    res = json.loads((report["run_dir"] / "results.json").read_text())
    assert f"{100 * res['metrics']['average']['accuracy']:.2f}" in text  # summary metrics at the top


def test_report_renders_in_chromium_with_images_boxes_and_placeholders(report, tmp_path):
    dom = render_dom(report["html"], "", tmp_path)
    records = report["records"]
    assert len(records) == 2 * 2 * (10 + 5)  # 60 samples: two pages of 50
    assert attr(dom, "match-count", "data-count") == str(len(records))
    assert attr(dom, "page-info", "data-pages") == "2"
    page = cards(dom)
    assert len(page) == 50
    # every image on the page loaded (JS records naturalWidth), none failed
    total = int(attr(dom, "img-status", "data-total"))
    assert total == len(re.findall(r"<img ", "".join(page))) > 50
    assert attr(dom, "img-status", "data-loaded") == str(total) and attr(dom, "img-status", "data-failed") == "0"
    widths = re.findall(r'data-natural-width="(\d+)"', dom)
    assert len(widths) == total and all(int(w) > 0 for w in widths)
    # hostile model text is shown as text, never run
    assert "data-pwned" not in dom.split("<script")[0].split("<body")[1].split(">")[0]
    assert "&lt;script&gt;document.body.setAttribute" in dom
    by_id = {r["id"]: r for r in records}
    shown = {re.search(r'data-id="([^"]+)"', c).group(1): c for c in page}
    for sid, html in shown.items():
        r = by_id[sid]
        assert ("correct" if r["correct"] else "wrong") in html
        assert f"gold: {r['gold']}" in html
        if r["error"]:
            assert "error: timeout &lt;b&gt;after&lt;/b&gt; 30 s" in html
        if r["stages"]:
            assert "On closer look: a crack." in html and 'class="stage-name">rethink<' in html
        if r["stages"] and r["image"] not in report["missing"]:
            assert re.search(rf'<rect x="{PRED_BOX[0]}" y="{PRED_BOX[1]}" width="18" height="15"[^>]*stroke="#f0f"', html)
        if r["label"] == 1 and r["image"] not in report["missing"]:
            assert re.search(r'<rect x="4" y="4" width="8" height="6"[^>]*stroke="#0c0"', html)  # GT box
            assert re.search(r'<polyline points="[\d. ]+"[^>]*stroke="#ff0"', html)  # GT mask outline
        if r["qtype"] == "Anomaly Detection":
            assert "Is there any defect in the object?" in html and "A. Yes." in html
    # missing files: placeholders that name them, no crash
    missing_cards = [html for sid, html in shown.items() if by_id[sid]["image"] in report["missing"]
                     or report["missing"][1] in by_id[sid]["references"]]
    assert missing_cards
    for html in missing_cards:
        assert 'class="placeholder"' in html and "image file not found: " in html


def test_report_filters_and_pages(report, tmp_path):
    records = report["records"]
    failed = [r for r in records if r["error"] or r["parse_status"] == "unparsed"]
    dom = render_dom(report["html"], "show=failed", tmp_path)
    assert attr(dom, "match-count", "data-count") == str(len(failed)) and failed
    assert all(c.startswith('<div class="card failed"') for c in cards(dom))

    wrong_b = [r for r in records if r["dataset"] == "DS-B" and not r["correct"]]
    dom = render_dom(report["html"], "show=wrong&dataset=DS-B", tmp_path)
    assert attr(dom, "match-count", "data-count") == str(len(wrong_b))
    ids = re.findall(r'<div class="card \w+" data-id="([^"]+)" data-correct="0"', dom)
    assert sorted(ids) == sorted(r["id"] for r in wrong_b)

    dom = render_dom(report["html"], "page=2", tmp_path)
    assert attr(dom, "page-info", "data-page") == "2"
    page2 = [re.search(r'data-id="([^"]+)"', c).group(1) for c in cards(dom)]
    assert page2 == [r["id"] for r in records][50:]


def figures_of(dom: str) -> dict[str, dict[str, int]]:
    """Each inline figure's measured size and number of drawn elements, as the page's script recorded them."""
    out = {}
    for tag in re.findall(r'<figure class="plot"[^>]*>', dom):
        name = re.search(r'data-plot="([^"]+)"', tag).group(1)
        out[name] = {k: int(re.search(rf'data-{k}="(\d+)"', tag).group(1)) for k in ("width", "height", "drawn")}
    return out


def test_report_figures_and_box_quality_render_in_chromium(report, tmp_path, capsys):
    dom = render_dom(report["html"], "", tmp_path)
    figs = figures_of(dom)
    assert set(figs) == {"categories", "confusion"}  # a text model: no ROC or score histograms
    for name, f in figs.items():
        assert f["width"] > 200 and f["height"] > 100 and f["drawn"] > 20, (name, f)
    assert attr(dom, "plots-status", "data-total") == "2" and attr(dom, "plots-status", "data-rendered") == "2"
    assert "Defect Classification" in dom.split('data-plot="confusion"')[1].split("</figure>")[0]
    # box quality: the `leaderboard --layout boxes` figures of this run, in the summary
    assert main(["leaderboard", "--layout", "boxes", str(report["run_dir"]), "--format", "csv"]) == 0
    rows = [line.split(",") for line in capsys.readouterr().out.splitlines()[1:]]
    table = dom.split('id="box-quality"')[1].split("</table>")[0]
    shown = [re.findall(r"<td>([^<]*)</td>", tr) for tr in table.split("<tr")[2:]]
    assert shown == [[r[2], *r[3:8]] for r in rows] and [r[0] for r in shown] == ["DS-A", "DS-B", "average"]


@pytest.fixture(scope="module")
def score_report(tmp_path_factory):
    base = tmp_path_factory.mktemp("score-report")
    data = write_mini_mmad(base / "data", n_good=4, n_bad=4)
    run_dir = run(RunSpec(model="report-scorer", task="report-mini-binary", data_root=data, out=base / "runs",
                          progress=False)).run_dir
    out = base / "report.html"
    assert main(["report", str(run_dir), "--out", str(out)]) == 0
    return {"html": out, "run_dir": run_dir}


registry.register_model("report-scorer", "tests.helpers:PathScorer", "test score model")
registry.register_task("report-mini-binary", "tests.helpers:mini_binary_task", "mini suite, yes/no")


def test_score_model_cards_show_score_threshold_and_decision(score_report, tmp_path):
    dom = render_dom(score_report["html"], "", tmp_path)
    page = {re.search(r'data-id="([^"]+)"', c).group(1): c for c in cards(dom)}
    assert len(page) == 32
    for sid, html in page.items():
        assert "answer:" not in html and "gold:" not in html  # no "answer: -" that reads like a failure
        i = int(sid.split("/")[-1].split(".")[0].split(":")[0])
        if "/good/" in sid:  # normal image i scores 0.1 i; each category's calibrated threshold is 0.5
            want = ("score: " + (f"{0.1 * i:.4f}" if i else "0.000") + " · threshold", "decision: normal",
                    "truth: normal", "correct")
        else:  # anomalous i scores 0.45 + 0.1 i: "> 0.5" misses the first one
            want = (f"score: {0.45 + 0.1 * i:.4f} · threshold", "decision: " + ("normal" if i == 0 else "anomalous"),
                    "truth: anomalous", "wrong" if i == 0 else "correct")
        text = re.sub(r"<[^>]+>", "", html)
        assert "threshold: 0.5000 (calibrated)" in text, text
        for w in want:
            assert w in text, (w, text)
    figs = figures_of(dom)
    assert set(figs) == {"categories", "confusion", "roc", "scores"}
    assert all(f["width"] > 200 and f["height"] > 100 and f["drawn"] > 20 for f in figs.values()), figs
    assert attr(dom, "plots-status", "data-rendered") == "4"
    assert 'id="box-quality"' not in dom  # a score model writes no boxes
