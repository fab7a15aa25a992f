"""The HTML report: the gate's Markdown rendered, the per-turn matrix with its filters, the primary CI plot."""

import re

import numpy as np
import polars as pl

from models.eval.gate import Comparison, PrimaryPart
from models.eval.gate import gate as gate_challengers
from models.eval.report import eval_report_html, turn_matrix

CHAMPION, CHALLENGER = "intent-v1.hybrid.template", "intent-v1.bm25.template"
SUCCESS = {  # (conversation, turn) -> turn_success per candidate
    ("c1", 0): (1.0, 1.0),  # both pass
    ("c1", 1): (0.0, 1.0),  # the challenger fixes a failure
    ("c2", 0): (0.6, 0.6),  # both partial, equal
    ("c3", 0): (1.0, 0.0),  # the challenger breaks a turn
}


def _results(candidate: str, column: int) -> pl.DataFrame:
    curated = pl.DataFrame(
        [
            {
                "conversation_id": conversation,
                "turn_index": turn,
                "text": f"<b>request</b> {conversation}/{turn}",
                "expected_behaviour": "show_tracks",
                "gold_intent": "recommend",
                "pred_intent": "recommend",
                "intent_correct": True,
                "slot_f1": 1.0,
                "constraint_sat": values[column],
                "turn_success": values[column],
                "groundedness": 1.0,
                "safe": None,
                "response": f"answer of {candidate}",
                "golden_set": "golden_curated",
            }
            for (conversation, turn), values in SUCCESS.items()
        ],
        schema_overrides={"safe": pl.Float64},
    )
    cpcd = pl.DataFrame(
        {
            "conversation_id": ["p1", "p1", "p2"],
            "turn_index": [0, 1, 0],
            **{m: [1.0, 0.0, 1.0] for m in ("hit_at_1", "hit_at_10", "recall_at_10", "hit_at_20")},
            **{m: [0.5, 0.0, 1.0] for m in ("mrr_at_10", "ndcg_at_10")},
            "golden_set": ["golden_cpcd"] * 3,
        }
    )
    return pl.concat([curated, cpcd], how="diagonal_relaxed").with_columns(candidate=pl.lit(candidate))


def _report():
    evaluations = {CHALLENGER: _results(CHALLENGER, 1), CHAMPION: _results(CHAMPION, 0)}
    turn_success = Comparison(
        "turn_success",
        "golden_curated",
        [conversation for conversation, _ in SUCCESS],
        [v[0] for v in SUCCESS.values()],
        {CHALLENGER: [v[1] for v in SUCCESS.values()]},
    )
    decision = gate_challengers(CHAMPION, [PrimaryPart(turn_success, 1.0)], n_resamples=200).decisions[
        CHALLENGER
    ]
    calibration = pl.DataFrame(
        {
            "judge_version": ["response_rules@v1"],
            "label_set": ["curated_rating"],
            "n": [71],
            "kappa": [0.5],
            "accuracy": [0.6],
        }
    )
    baseline = evaluations[CHAMPION].filter(pl.col("golden_set") == "golden_cpcd")
    gate = f"## {CHALLENGER}\n{decision.to_markdown()}"
    return evaluations, eval_report_html(evaluations, baseline, calibration, gate, CHAMPION, 0.4)


def test_gate_markdown_is_rendered_not_printed():
    _, report = _report()
    assert (
        "<strong>Decision: inconclusive</strong>" in report.html
    )  # three conversations cannot show a difference
    assert "<th>metric</th>" in report.html and "turn_success@golden_curated (primary)" in report.html
    assert "**Decision" not in report.html and "|---|" not in report.html
    assert "<b>request</b>" not in report.html  # listener text is escaped, never markup


def test_turn_matrix_puts_the_champion_first_and_filters_failures_and_differences():
    evaluations, report = _report()
    matrix = turn_matrix(evaluations, CHAMPION)
    assert matrix.columns[4:] == [CHAMPION, CHALLENGER]
    assert matrix.select(CHAMPION, CHALLENGER).rows() == list(SUCCESS.values())

    rows = re.findall(r'<tr class="([\w -]+)">', report.html)
    assert rows == ["all-pass same", "some-fail differs", "some-fail same", "some-fail differs"]
    # The filters are CSS on two checkboxes placed before the matrix: no script, nothing fetched.
    assert "#only-failures:checked~table.matrix tr.all-pass{display:none}" in report.html
    assert "#only-differences:checked~table.matrix tr.same{display:none}" in report.html
    assert report.html.index('id="only-failures"') < report.html.index('<table class="matrix">')
    assert "<script" not in report.html and "http://" not in report.html and "https://" not in report.html
    assert '<td class="fail" title="recommend: answer of intent-v1.bm25.template">✗ 0.00</td>' in report.html
    assert "better than the champion on 1, worse on 1" in report.html


def test_primary_plot_is_embedded_and_the_report_is_deterministic():
    evaluations, report = _report()
    assert report.primary_ci_png.startswith(b"\x89PNG")
    assert report.html.count("data:image/png;base64,") >= 5
    _, again = _report()
    assert again.html == report.html and np.array_equal(
        np.frombuffer(again.primary_ci_png, np.uint8), np.frombuffer(report.primary_ci_png, np.uint8)
    )
