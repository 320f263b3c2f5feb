"""Box quality (results.json `boxes`, `--layout boxes`): figures checked against boxes worked out by hand."""

import json

import pytest

from adbench import registry
from adbench.cli import main
from adbench.data.mmad import read_mmad
from adbench.model import Model, OutputKind
from adbench.results.box_quality import BoxCounts, box_quality, match_reply
from adbench.runner import RunSpec, run
from adbench.schema import Box, ParseStatus, Record, Response
from adbench.task import QuestionTask
from tests.helpers import write_mini_mmad

registry.register_model("boxer", "tests.test_box_quality:Boxer", "test model that writes boxes")
registry.register_task("mini-boxes", "tests.test_box_quality:boxed_task", "mini suite with GT boxes")

GT = (4, 4, 12, 10)  # write_mini_mmad's masks: rows 4..9, columns 4..11


def boxed_task():
    def read(root):
        samples = read_mmad(root)
        for s in samples:
            if s.label == 1:
                s.boxes = [Box(*GT)]
        return samples

    return QuestionTask("mini-boxes", "mini suite with GT boxes", read)


class Boxer(Model):
    """DS-A: the GT box exactly, nothing on normal images. DS-B: the left half of the GT box (IoU 0.5) and a
    stray box; a box on normal images too."""

    name = "boxer"
    output = OutputKind.GENERATIVE

    def predict(self, queries):
        out = []
        for q in queries:
            anomalous, ds_a = "/good/" not in q.id, q.id.startswith("DS-A/")
            if anomalous:
                boxes = [Box(*GT)] if ds_a else [Box(4, 4, 8, 10), Box(20, 20, 30, 30)]
            else:
                boxes = [] if ds_a else [Box(0, 0, 2, 2)]
            out.append(Response(text="A", answer="A", parse_status=ParseStatus.PARSED, boxes=boxes))
        return out


def test_one_reply_by_hand():
    g1, g2 = Box(0, 0, 10, 10), Box(20, 20, 30, 30)
    p1, p2 = Box(0, 0, 10, 5), Box(5, 0, 15, 10)
    # IoU: p1-g1 = 50/100 = 0.5 (counts: >= 0.5), p2-g1 = 50/150 = 1/3, both 0 with g2
    m = match_reply([p1, p2], [g1, g2])
    assert m.matched == 1
    assert m.best_iou == pytest.approx((0.5, 0.0))
    # GIoU: p1-g1 0.5, p2-g1 1/3, p1-g2 0 - 750/900 = -5/6, p2-g2 0 - 550/750 = -11/15.
    # Hungarian: {p1-g1, p2-g2} = 0.5 - 11/15 beats {p1-g2, p2-g1} = -5/6 + 1/3; mean (0.5 - 11/15) / 2 = -7/60
    assert m.giou == pytest.approx(-7 / 60)
    # no predicted box: nothing found, best IoU 0, GIoU 0 (the reward's convention)
    m = match_reply([], [g1])
    assert (m.matched, m.best_iou, m.giou) == (0, (0.0,), 0.0)
    # one predicted box can find one GT box only, even if it overlaps two by 0.5
    wide = Box(0, 0, 20, 10)
    m = match_reply([wide], [Box(0, 0, 10, 10), Box(10, 0, 20, 10)])
    assert m.matched == 1 and m.best_iou == pytest.approx((0.5, 0.5))
    # two predictions, one GT: at most one pair; the best IoU is the better one
    m = match_reply([Box(0, 0, 10, 5), Box(0, 0, 10, 10)], [Box(0, 0, 10, 10)])
    assert m.matched == 1 and m.best_iou == pytest.approx((1.0,)) and m.giou == pytest.approx(1.0)


def _record(rid, ds, label, boxes=(), gt=(), error=None):
    return Record(id=rid, dataset=ds, category="c", qtype="Anomaly Detection", label=label, gold="A",
                  image=f"/x/{rid}.png", text=None if error else "A", answer=None if error else "A", score=None,
                  correct=True, error=error, parse_status=ParseStatus.NOT_APPLICABLE if error else ParseStatus.PARSED,
                  boxes=[Box(*b).to_dict() for b in boxes], gt_boxes=[Box(*b).to_dict() for b in gt])


def test_per_dataset_and_average_by_hand():
    records = [
        _record("a", "X", 1, boxes=[(0, 0, 10, 5), (5, 0, 15, 10)], gt=[(0, 0, 10, 10), (20, 20, 30, 30)]),
        _record("b", "X", 1, boxes=[], gt=[(0, 0, 10, 10)]),
        _record("c", "X", 0),
        _record("d", "X", 0, boxes=[(1, 1, 2, 2)]),
        _record("e", "X", 1, gt=[(0, 0, 10, 10)], error="timeout"),  # no reply: not judged
        _record("f", "X", 1, boxes=[(1, 1, 2, 2)]),  # anomalous without GT boxes: not judged
        _record("g", "Y", 1, boxes=[(0, 0, 10, 10)], gt=[(0, 0, 10, 10)]),
    ]
    q = box_quality(records)
    x, y = q["datasets"]["X"], q["datasets"]["Y"]
    # X: 3 GT boxes (a: 2, b: 1), 2 predicted, 1 found; best IoUs 0.5, 0, 0; GIoUs -7/60 (a) and 0 (b)
    assert x["recall"] == pytest.approx(1 / 3) and x["precision"] == pytest.approx(1 / 2)
    assert x["mean_best_iou"] == pytest.approx(0.5 / 3) and x["mean_giou"] == pytest.approx(-7 / 120)
    assert x["normal_no_box"] == pytest.approx(1 / 2)
    assert (x["n_anomalous"], x["n_gt_boxes"], x["n_pred_boxes"], x["n_matched"], x["n_normal"],
            x["n_normal_no_box"], x["n_anomalous_without_gt"], x["n_failed"]) == (2, 3, 2, 1, 2, 1, 1, 1)
    assert (y["recall"], y["precision"], y["mean_best_iou"], y["normal_no_box"]) == (1.0, 1.0, 1.0, None)
    assert y["mean_giou"] == pytest.approx(1.0)
    avg = q["average"]  # the mean over datasets; normal_no_box only X has
    assert avg["recall"] == pytest.approx(2 / 3) and avg["precision"] == pytest.approx(0.75)
    assert avg["mean_best_iou"] == pytest.approx(7 / 12) and avg["mean_giou"] == pytest.approx(113 / 240)
    assert avg["normal_no_box"] == pytest.approx(0.5)
    assert q["iou_threshold"] == 0.5
    # a model that wrote no box at all gets no box figures; no prediction on an anomalous reply gives no precision
    assert box_quality([_record("b", "X", 1, gt=[(0, 0, 10, 10)])]) is None
    c = BoxCounts()
    c.add(_record("b", "X", 1, gt=[(0, 0, 10, 10)]))
    assert c.figures()["precision"] is None and c.figures()["recall"] == 0.0


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("boxes")
    data = write_mini_mmad(base / "data", n_good=2, n_bad=2)
    boxed = run(RunSpec(model="boxer", task="mini-boxes", data_root=data, out=base / "runs", progress=False)).run_dir
    plain = run(RunSpec(model="chance", task="mini-boxes", data_root=data, out=base / "runs", progress=False)).run_dir
    return boxed, plain


def test_results_json_has_the_box_figures_of_a_model_that_writes_boxes(runs):
    boxed, plain = runs
    q = json.loads((boxed / "results.json").read_text())["boxes"]
    a, b = q["datasets"]["DS-A"], q["datasets"]["DS-B"]
    # per dataset: 2 categories x 2 anomalous images x 2 questions = 8 anomalous replies, 4 normal ones
    assert (a["n_anomalous"], a["n_gt_boxes"], a["n_normal"]) == (8, 8, 4)
    assert (a["recall"], a["precision"], a["mean_best_iou"], a["normal_no_box"]) == (1.0, 1.0, 1.0, 1.0)
    assert a["mean_giou"] == pytest.approx(1.0)
    # DS-B: (4, 4, 8, 10) is the GT box's left half: IoU 24/48 = 0.5 (found), GIoU 0.5 (enclosed); the stray box
    # finds nothing (precision 1/2); every normal reply has a box
    assert (b["recall"], b["precision"], b["normal_no_box"], b["n_pred_boxes"]) == (1.0, 0.5, 0.0, 16)
    assert b["mean_best_iou"] == pytest.approx(0.5) and b["mean_giou"] == pytest.approx(0.5)
    assert q["average"]["precision"] == pytest.approx(0.75) and q["average"]["mean_giou"] == pytest.approx(0.75)
    assert "boxes" not in json.loads((plain / "results.json").read_text())
    # rescoring derives it again (not carried over from the old file)
    assert main(["score", str(boxed)]) == 0
    assert json.loads((boxed / "results.json").read_text())["boxes"] == q


def test_boxes_layout(runs, capsys):
    boxed, plain = runs
    assert main(["leaderboard", "--layout", "boxes", str(boxed), str(plain)]) == 0
    out = capsys.readouterr().out
    lines = [x for x in out.splitlines() if x.startswith("|")]
    assert [c.strip() for c in lines[0].split("|")[1:-1]] == [
        "Group", "Model", "Dataset", "Recall@0.5 %", "Precision@0.5 %", "best IoU", "GIoU (Hungarian)",
        "normal: no box %", "Source"]
    cells = [[c.strip() for c in x.split("|")[1:-1]] for x in lines[2:]]
    by = {(c[1], c[2]): c[3:8] for c in cells}
    assert by[("boxer", "DS-A")] == ["100.00", "100.00", "1.000", "1.000", "100.00"]
    assert by[("boxer", "DS-B")] == ["100.00", "50.00", "0.500", "0.500", "0.00"]
    assert by[("boxer", "average")] == ["100.00", "75.00", "0.750", "0.750", "50.00"]
    assert by[("chance", "-")] == ["-"] * 5
    assert "chance: the model wrote no box in this run" in out
    assert "boxer: 16 anomalous replies with 16 GT boxes and 24 predicted boxes; 8 normal replies" in out
    assert "Metric:" not in out and "Avg." not in out
    assert main(["leaderboard", "--layout", "boxes", str(boxed), "--format", "csv"]) == 0
    csv_lines = capsys.readouterr().out.splitlines()
    assert csv_lines[1] == "Runs,boxer,DS-A,100.00,100.00,1.000,1.000,100.00," + \
        f"run {json.loads((boxed / 'results.json').read_text())['run_id']},boxes"
    assert main(["leaderboard", "--layout", "boxes", str(boxed), "--ci"]) == 2
    assert "--layout boxes takes no --ci" in capsys.readouterr().err
    assert main(["leaderboard", "--layout", "boxes", str(boxed), "--reference", "paper"]) == 2  # not ignored
    assert "--reference" in capsys.readouterr().err
