"""The evaluation report: one static HTML file, plots embedded as base64 PNGs, nothing fetched from a network."""

import base64
import html
import io
from collections.abc import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import polars as pl  # noqa: E402
from sklearn.metrics import confusion_matrix  # noqa: E402

from models.eval.evaluate import ci_table  # noqa: E402
from models.labels import Intent  # noqa: E402

HEADLINE_COLUMNS = {
    "golden_curated": ("turn_success", "intent_correct", "slot_f1", "constraint_sat", "groundedness", "safe"),
    "golden_cpcd": ("hit_at_1", "hit_at_10", "recall_at_10", "mrr_at_10", "ndcg_at_10", "hit_at_20"),
}
_MAX_TURN = 8  # CPCD conversations thin out after this many turns; later turns are pooled


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


def eval_report_html(
    evaluations: Mapping[str, pl.DataFrame],
    baseline: pl.DataFrame,
    calibration: pl.DataFrame,
    gate_markdown: str,
    champion: str | None,
    kappa_floor: float,
) -> str:
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
    sections = [
        (
            "Champion gate",
            f"<p>Champion: <code>{html.escape(champion or 'none')}</code></p><pre>{html.escape(gate_markdown)}</pre>",
        ),
        ("Headline metrics (per-item means)", _table(summary_table(evaluations))),
        (
            "Metrics with 95% CIs (conversation bootstrap)",
            _image(metrics_ci_figure(ci_table(evaluations)), "metrics with CIs"),
        ),
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
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>Setlist evaluation report</title>"
        f"<style>{style}</style></head><body><h1>Setlist evaluation report</h1>{body}</body></html>"
    )
