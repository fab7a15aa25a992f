"""Turn tables and figures into metadata the Dagster UI renders."""

import base64
import io

import dagster as dg
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import polars as pl  # noqa: E402

from checks.gx_runner import SuiteOutcome  # noqa: E402


def preview(frame: pl.DataFrame, rows: int = 10) -> dg.MetadataValue:
    """The first rows as a markdown table (lists shown joined, long text cut)."""
    head = frame.head(rows).with_columns(
        [pl.col(c).list.join(", ") for c, t in frame.schema.items() if t == pl.List(pl.String)]
    )
    header = "| " + " | ".join(head.columns) + " |"
    rule = "|" + "---|" * len(head.columns)
    body = [
        "| " + " | ".join("" if v is None else str(v).replace("|", "\\|")[:80] for v in row) + " |"
        for row in head.iter_rows()
    ]
    return dg.MetadataValue.md("\n".join([header, rule, *body]))


def counts_table(counts: dict[str, int | float], key: str, value: str) -> dg.MetadataValue:
    lines = [f"| {key} | {value} |", "|---|---|", *(f"| {k} | {v} |" for k, v in counts.items())]
    return dg.MetadataValue.md("\n".join(lines))


def figure(fig: plt.Figure, title: str) -> dg.MetadataValue:
    """A matplotlib figure embedded as a markdown image (the UI shows it inline)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    encoded = base64.b64encode(buffer.getvalue()).decode()
    return dg.MetadataValue.md(f"![{title}](data:image/png;base64,{encoded})")


def bar_chart(counts: dict[str, int], title: str, top: int = 25) -> dg.MetadataValue:
    items = sorted(counts.items(), key=lambda kv: -kv[1])[:top]
    fig, ax = plt.subplots(figsize=(8, 0.25 * len(items) + 1))
    ax.barh([k for k, _ in reversed(items)], [v for _, v in reversed(items)])
    ax.set_title(title)
    return figure(fig, title)


def suite_result(
    outcome: SuiteOutcome, severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.ERROR
) -> dg.AssetCheckResult:
    """A GX suite outcome as a check result whose metadata names each expectation and its observed value."""
    return dg.AssetCheckResult(
        passed=outcome.success,
        severity=severity,
        metadata={
            "expectations": dg.MetadataValue.md(outcome.as_markdown()),
            "failed_expectations": ", ".join(o.expectation for o in outcome.failures) or "none",
            "evaluated": len(outcome.outcomes),
        },
    )
