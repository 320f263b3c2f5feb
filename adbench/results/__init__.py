"""From Records to every figure adbench prints: one package, one engine.

    samples.jsonl --verdicts.judge--> per-sample verdicts (strict; MMAD's rule; per threshold rule)
                  --engine.tally---> counts per cell (dataset, category, question type, label)
                  --engine nodes---> figures: results.json (scoring), every --layout (layouts, tables),
                                     --ci resamples and McNemar's pairs (tables), the HTML report (report)
    tables --writer--> markdown / csv / latex; published rows from reference (data: published/*.json)

Modules: `verdicts` (model kind, threshold rules, right/wrong per record), `engine`
(cells and figure nodes), `scoring` (results.json's figures), `box_quality` (the boxes'
recall, precision, IoU and GIoU: results.json's `boxes`), `layouts` (the tables'
columns as data over the engine), `runs` (a run directory read for a table), `status`
(failed / incomplete marks), `tables` (rows, intervals, comparisons), `writer` (the one
renderer), `reference` (the published tables), `figures` (the numbers behind the
pictures `adbench.plots` draws), `report` (the HTML page, a Jinja2 template in
templates/).
"""

from adbench.results.engine import METRICS, mmad_qtype
from adbench.results.scoring import record_correctness, require_mmad_figures, score_records
from adbench.results.verdicts import RULES, ThresholdRule, judge

__all__ = ["METRICS", "RULES", "ThresholdRule", "judge", "mmad_qtype", "record_correctness",
           "require_mmad_figures", "score_records"]
