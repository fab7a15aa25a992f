"""The interaction-log adapter: typed rows kept, bad rows quarantined with reasons, counts reconcile."""

import json

import polars as pl

from models.feedback.interactions import INTERACTION_SCHEMA, read_interaction_logs, session_metrics

GOOD = {
    "session_id": "s1",
    "user_id": "u1",
    "variant": "intent-v1.hybrid.template",
    "turn_index": 0,
    "request": "calm piano",
    "event": "impression",
    "track_id": "t1",
    "position": 0,
    "timestamp": "2025-01-06T10:00:00Z",
}


def test_bad_rows_are_quarantined_with_reasons_and_counts_reconcile(tmp_path):
    rows = [
        json.dumps(GOOD),
        json.dumps({**GOOD, "event": "play", "dwell_s": 30.5, "timestamp": "2025-01-06T10:00:01"}),
        json.dumps({**GOOD, "event": "skip", "dwell_s": 30.5}),
        json.dumps({**GOOD, "event": "like"}),
        "{not json",
        json.dumps({**GOOD, "event": "purchase"}),
        json.dumps({k: v for k, v in GOOD.items() if k != "user_id"}),
        json.dumps({**GOOD, "position": -1}),
        json.dumps({**GOOD, "position": "first"}),
        json.dumps({**GOOD, "timestamp": "yesterday"}),
        json.dumps({**GOOD, "event": "like", "dwell_s": 3.0}),
        json.dumps({**GOOD, "colour": "blue"}),
    ]
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(rows) + "\n\n")
    read = read_interaction_logs(path)
    assert read.rows_read == 12 and read.reconciles
    assert read.kept.schema == INTERACTION_SCHEMA and read.kept.height == 4
    assert dict(read.quarantined.select("line_no", "rule").iter_rows()) == {
        5: "malformed_line",
        6: "unknown_event",
        7: "missing_field",
        8: "negative_value",
        9: "bad_type",
        10: "bad_timestamp",
        11: "dwell_on_non_play",
        12: "unknown_field",
    }
    assert read.quarantined["detail"].str.len_chars().min() > 0

    metrics = session_metrics(read.kept).row(0, named=True)
    assert (metrics["impressions"], metrics["plays"], metrics["skips"], metrics["likes"]) == (1, 1, 1, 1)
    assert (
        metrics["listening_min"] == 30.5 / 60 and metrics["like_rate"] == 1.0 and metrics["skip_rate"] == 1.0
    )


def test_parquet_logs_go_through_the_same_rules(tmp_path):
    frame = pl.DataFrame([GOOD, {**GOOD, "event": "nope"}])
    path = tmp_path / "events.parquet"
    frame.write_parquet(path)
    read = read_interaction_logs(path)
    assert (read.kept.height, read.quarantined["rule"].to_list(), read.reconciles) == (
        1,
        ["unknown_event"],
        True,
    )
