"""The evaluation report: one static HTML file, plots embedded as base64 PNGs, nothing fetched from a network.

Besides the aggregate plots it holds a per-turn matrix of the champion against each challenger (like
promptfoo's compare view): every curated turn with each candidate's `turn_success`, filterable to the turns
some candidate failed or the turns where candidates differ, with a CSS checkbox (no script).
"""

import base64
import html
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import polars as pl  # noqa: E402
from markdown_it import MarkdownIt  # noqa: E402
from sklearn.metrics import confusion_matrix  # noqa: E402

from models.eval.evaluate import CURATED, TURN_SUCCESS, ci_table  # noqa: E402
from models.labels import Intent  # noqa: E402

HEADLINE_COLUMNS = {
    "golden_curated": ("turn_success", "intent_correct", "slot_f1", "constraint_sat", "groundedness", "safe"),
    "golden_cpcd": ("hit_at_1", "hit_at_10", "recall_at_10", "mrr_at_10", "ndcg_at_10", "hit_at_20"),
}
REPORT_VERSION = (
    "report-v2"  # part of the report run's fingerprint: bump it when the report's content changes
)
_MAX_TURN = 8  # CPCD conversations thin out after this many turns; later turns are pooled
# The gate writes its evidence as Markdown (tables included); raw HTML in it is escaped, not rendered.
_MARKDOWN = MarkdownIt("commonmark", {"html": False}).enable("table")


def png(fig: plt.Figure) -> bytes:
    buffer = io.BytesIO()
    # No timestamp in the file, so an unchanged report renders to identical bytes.
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return buffer.getvalue()


def metrics_ci_figure(cis: pl.DataFrame) -> bytes:
    """Each headline metric per candidate: the estimate and its 95% conversation-bootstrap interval."""
    metrics = cis.select("golden_set", "metric").unique(maintain_order=True).rows()
    fig, axes = plt.subplots(
        1, len(metrics), figsize=(3.2 * len(metrics), 0.5 * cis["candidate"].n_unique() + 1.5)
    )
    for ax, (golden_set, metric) in zip(np.atleast_1d(axes), metrics, strict=True):
        rows = cis.filter((pl.col("golden_set") == golden_set) & (pl.col("metric") == metric))
        y = np.arange(rows.height)
        est = rows["estimate"].to_numpy()
        ax.errorbar(
            est, y, xerr=[est - rows["low"].to_numpy(), rows["high"].to_numpy() - est], fmt="o", capsize=3
        )
        ax.set_yticks(y, rows["candidate"].to_list())
        ax.set_title(f"{metric}\n({golden_set})", fontsize=9)
        ax.set_xlim(0, 1)
        ax.set_ylim(-0.5, rows.height - 0.5)
    for ax in np.atleast_1d(axes)[1:]:
        ax.tick_params(labelleft=False)
    return png(fig)


def primary_ci_figure(cis: pl.DataFrame, champion: str | None) -> bytes:
    """The gate's primary metric per candidate with its 95% conversation-bootstrap interval, champion first."""
    rows = cis.filter((pl.col("golden_set") == CURATED) & (pl.col("metric") == TURN_SUCCESS))
    rows = rows.sort(pl.col("candidate") != (champion or ""), "candidate")
    y = np.arange(rows.height)
    est = rows["estimate"].to_numpy()
    fig, ax = plt.subplots(figsize=(7, 0.45 * rows.height + 1.2))
    for i, (candidate, low, high) in enumerate(rows.select("candidate", "low", "high").iter_rows()):
        color = "tab:orange" if candidate == champion else "tab:blue"
        ax.errorbar(est[i], y[i], xerr=[[est[i] - low], [high - est[i]]], fmt="o", color=color, capsize=4)
    labels = [f"{c} (champion)" if c == champion else c for c in rows["candidate"]]
    ax.set_yticks(y, labels, fontsize=8)
    ax.set_ylim(rows.height - 0.5, -0.5)  # the champion on top
    ax.set_xlim(0, 1)
    ax.set_xlabel(f"{TURN_SUCCESS} on {CURATED} (mean, 95% CI)")
    ax.grid(axis="x", alpha=0.3)
    return png(fig)


def hit_by_turn_figure(results: Mapping[str, pl.DataFrame], k: int = 10) -> bytes:
    """CPCD hit@k by turn index (the conversation grows, so does the query), one line per system."""
    fig, ax = plt.subplots(figsize=(7, 3.5))
    column = f"hit_at_{k}"
    for name, frame in results.items():
        by_turn = (
            frame.group_by(turn=pl.col("turn_index").clip(upper_bound=_MAX_TURN))
            .agg(pl.col(column).mean(), pl.len())
            .sort("turn")
        )
        ax.plot(by_turn["turn"], by_turn[column], marker="o", label=name)
    ax.set_xticks(range(_MAX_TURN + 1), [*map(str, range(_MAX_TURN)), f"{_MAX_TURN}+"])
    ax.set_xlabel("turn index")
    ax.set_ylabel(f"hit@{k} (micro)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return png(fig)


def confusion_figure(gold: Sequence[str], predicted: Sequence[str], title: str) -> bytes:
    labels = [i.value for i in Intent]
    matrix = confusion_matrix(gold, predicted, labels=labels)
    fig, ax = plt.subplots(figsize=(6, 5))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("gold")
    ax.set_title(title, fontsize=9)
    for (i, j), count in np.ndenumerate(matrix):
        if count:
            ax.text(
                j,
                i,
                str(count),
                ha="center",
                va="center",
                fontsize=7,
                color="black" if count < matrix.max() / 2 else "white",
            )
    return png(fig)


def calibration_figure(calibration: pl.DataFrame, kappa_floor: float) -> bytes:
    """Cohen's kappa of every judge version on every label set, against the floor that earns trust."""
    labels = [f"{j}\n{s}" for j, s in calibration.select("judge_version", "label_set").rows()]
    kappa = calibration["kappa"].fill_nan(0.0).fill_null(0.0).to_numpy()
    fig, ax = plt.subplots(figsize=(7, 0.6 * len(labels) + 1))
    ax.barh(labels, kappa, color=["tab:green" if k >= kappa_floor else "tab:red" for k in kappa])
    ax.axvline(kappa_floor, color="black", linestyle="--", label=f"floor {kappa_floor:g}")
    ax.set_xlabel("Cohen's kappa vs human labels")
    ax.set_xlim(min(0.0, kappa.min()), 1)
    ax.tick_params(axis="y", labelsize=7)
    ax.legend(fontsize=8)
    return png(fig)


def summary_table(evaluations: Mapping[str, pl.DataFrame]) -> pl.DataFrame:
    """Per-item means of the headline columns, one row per candidate and golden set."""
    rows = []
    for candidate, results in evaluations.items():
        for golden_set, columns in HEADLINE_COLUMNS.items():
            part = results.filter(pl.col("golden_set") == golden_set)
            means = part.select(pl.col(c).cast(pl.Float64).mean().round(4) for c in columns).row(
                0, named=True
            )
            rows.append({"candidate": candidate, "golden_set": golden_set, "items": part.height, **means})
    return pl.DataFrame(rows, infer_schema_length=None)


def _table(frame: pl.DataFrame) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in frame.columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape('' if v is None else str(v))}</td>" for v in row) + "</tr>"
        for row in frame.iter_rows()
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _image(data: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(data).decode()}">'


def turn_matrix(evaluations: Mapping[str, pl.DataFrame], champion: str | None) -> pl.DataFrame:
    """One row per curated turn, one `turn_success` column per candidate (the champion's first)."""
    keys = ["conversation_id", "turn_index"]
    order = sorted(evaluations, key=lambda k: (k != champion, k))
    frames = [
        evaluations[k].filter(pl.col("golden_set") == CURATED).select(*keys, pl.col(TURN_SUCCESS).alias(k))
        for k in order
    ]
    first = evaluations[order[0]].filter(pl.col("golden_set") == CURATED)
    matrix = first.select(*keys, "text", "expected_behaviour")
    for frame in frames:
        matrix = matrix.join(frame, on=keys, how="left", maintain_order="left")
    return matrix.sort(keys)


def _outcome(value: float | None) -> tuple[str, str]:
    """CSS class and cell text of one turn's primary value."""
    if value is None:
        return "missing", "–"
    if value >= 1.0:
        return "pass", f"✓ {value:.2f}"
    return ("fail", f"✗ {value:.2f}") if value <= 0.0 else ("partial", f"~ {value:.2f}")


def _responses(results: pl.DataFrame) -> dict[tuple[str, int], str]:
    """What a candidate answered on each curated turn (predicted intent and response), for cell tooltips."""
    curated = results.filter(pl.col("golden_set") == CURATED)
    columns = curated.select("conversation_id", "turn_index", "pred_intent", "response")
    return {(c, t): f"{intent}: {response or ''}"[:300] for c, t, intent, response in columns.iter_rows()}


def _matrix_html(evaluations: Mapping[str, pl.DataFrame], champion: str | None) -> str:
    matrix = turn_matrix(evaluations, champion)
    candidates = matrix.columns[4:]
    responses = {k: _responses(evaluations[k]) for k in candidates}
    rows = []
    for row in matrix.iter_rows(named=True):
        values = [row[c] for c in candidates]
        key = (row["conversation_id"], row["turn_index"])
        passed = "all-pass" if all(v is not None and v >= 1.0 for v in values) else "some-fail"
        agree = "same" if len(set(values)) == 1 else "differs"
        cells = "".join(
            f'<td class="{_outcome(row[c])[0]}" title="{html.escape(responses[c].get(key, ""))}">'
            f"{_outcome(row[c])[1]}</td>"
            for c in candidates
        )
        rows.append(
            f'<tr class="{passed} {agree}"><td>{html.escape(row["conversation_id"])}</td>'
            f"<td>{row['turn_index']}</td><td>{html.escape(row['text'])}</td>"
            f"<td>{html.escape(row['expected_behaviour'])}</td>{cells}</tr>"
        )
    head = "".join(f"<th>{html.escape(c)}{' (champion)' if c == champion else ''}</th>" for c in candidates)
    return (
        _matrix_summary(matrix, candidates, champion)
        + '<input type="checkbox" id="only-failures"><label for="only-failures">failures only</label> '
        '<input type="checkbox" id="only-differences"><label for="only-differences">differences only</label>'
        '<table class="matrix"><thead><tr><th>conversation</th><th>turn</th><th>request</th><th>expected</th>'
        f"{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def _matrix_summary(matrix: pl.DataFrame, candidates: Sequence[str], champion: str | None) -> str:
    """Passes per candidate and, for each challenger, the turns it does better and worse than the champion."""
    items = []
    for c in candidates:
        item = f"<code>{html.escape(c)}</code>: {int((matrix[c] >= 1.0).sum())} of {matrix.height} turns pass"
        if champion in candidates and c != champion:
            better, worse = (
                int((matrix[c] > matrix[champion]).sum()),
                int((matrix[c] < matrix[champion]).sum()),
            )
            item += f"; better than the champion on {better}, worse on {worse}"
        items.append(f"<li>{item}</li>")
    legend = (
        f"<p>{TURN_SUCCESS} per curated turn: ✓ 1 (the whole slate fits, or the expected behaviour), ~ part of the "
        "slate fits, ✗ 0. Hover a cell for the predicted intent and the response.</p>"
    )
    return f"{legend}<ul>{''.join(items)}</ul>"


@dataclass(frozen=True)
class EvalReport:
    html: str
    primary_ci_png: bytes  # also shown in the Dagster UI


def eval_report_html(
    evaluations: Mapping[str, pl.DataFrame],
    baseline: pl.DataFrame,
    calibration: pl.DataFrame,
    gate_markdown: str,
    champion: str | None,
    kappa_floor: float,
) -> EvalReport:
    """The whole report; `evaluations` maps candidate key -> its per-item results (both golden sets)."""
    cpcd = {"bm25-baseline": baseline} | {
        key: frame.filter(pl.col("golden_set") == "golden_cpcd") for key, frame in evaluations.items()
    }
    confusions = "".join(
        _image(
            confusion_figure(part["gold_intent"].to_list(), part["pred_intent"].to_list(), key),
            f"intent confusion {key}",
        )
        for key, frame in evaluations.items()
        for part in [frame.filter(pl.col("golden_set") == "golden_curated")]
    )
    cis = ci_table(evaluations)
    primary = primary_ci_figure(cis, champion)
    sections = [
        (
            "Champion gate",
            f"<p>Champion: <code>{html.escape(champion or 'none')}</code></p>{_MARKDOWN.render(gate_markdown)}",
        ),
        (
            f"{TURN_SUCCESS} per candidate (95% CI, conversation bootstrap)",
            _image(primary, f"{TURN_SUCCESS} with CIs"),
        ),
        ("Per turn: champion and challengers", _matrix_html(evaluations, champion)),
        ("Headline metrics (per-item means)", _table(summary_table(evaluations))),
        ("Metrics with 95% CIs (conversation bootstrap)", _image(metrics_ci_figure(cis), "metrics with CIs")),
        ("CPCD hit@10 by turn index", _image(hit_by_turn_figure(cpcd), "hit@10 by turn")),
        ("Intent confusion (golden_curated)", confusions),
        (
            "Judge calibration",
            "<p>Judge-based metrics (groundedness, rubric rating, safety) come from these judges; "
            "trust them only as far as the kappa allows.</p>"
            + _image(calibration_figure(calibration, kappa_floor), "judge calibration")
            + _table(
                calibration.select("judge_version", "label_set", "n", pl.col("kappa", "accuracy").round(3))
            ),
        ),
    ]
    body = "".join(f"<h2>{html.escape(title)}</h2>{content}" for title, content in sections)
    style = (
        "body{font-family:sans-serif;max-width:1200px;margin:2em auto}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:3px 6px;font-size:13px}img{max-width:100%;margin:4px}"
        "td.pass{background:#e3f4e3}td.partial{background:#fdf3d8}td.fail{background:#f9dede}"
        "table.matrix td:nth-child(n+5){text-align:center;white-space:nowrap}"
        "#only-failures:checked~table.matrix tr.all-pass{display:none}"
        "#only-differences:checked~table.matrix tr.same{display:none}"
    )
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>Setlist evaluation report</title>"
        f"<style>{style}</style></head><body><h1>Setlist evaluation report</h1>{body}</body></html>"
    )
    return EvalReport(page, primary)
