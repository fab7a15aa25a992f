"""The gcp profile's storage contracts, against fakes: BigQuery and GCS cannot be reached from here.

- `FakeBigQuery` answers the calls dagster-gcp's IO manager and our polars bridge make (load jobs from
  Parquet; CREATE SCHEMA, TRUNCATE, DELETE and SELECT statements), keeping each table as a polars frame and
  running the WHERE clauses with polars SQL. It checks what BigQuery would refuse: an append whose schema
  differs from the table's. What it cannot show is BigQuery's own reading of the Parquet file.
- GCS is fsspec's in-memory filesystem, through the same UPath code that writes `gs://` URLs.
"""

import io
import re
from contextlib import contextmanager

import dagster as dg
import polars as pl
import pytest
from dagster_gcp.bigquery.io_manager import BigQueryClient
from google.api_core.exceptions import BadRequest, NotFound
from google.cloud import bigquery
from mlflow import MlflowClient
from polars.testing import assert_frame_equal
from upath import UPath

from orchestration.bigquery_io_manager import BigQuerySchemaError, PolarsBigQueryIOManager, bigquery_schema
from orchestration.io_manager import ParquetIOManager
from orchestration.resources import MLflowTracking

TABLE = re.compile(r"`?(?P<table>[\w-]+\.\w+\.\w+)`?")


class _Job:
    def __init__(self, frame: pl.DataFrame | None = None) -> None:
        self.frame = frame

    def result(self) -> "_Job":
        return self

    def to_arrow(self):
        return self.frame.to_arrow()


class FakeBigQuery:
    """A stand-in for `google.cloud.bigquery.Client` holding tables as polars frames (see module docstring)."""

    def __init__(self) -> None:
        self.tables: dict[str, pl.DataFrame] = {}
        self.schemas: dict[str, list[bigquery.SchemaField]] = {}

    def load_table_from_file(self, buffer, destination: str, job_config: bigquery.LoadJobConfig) -> _Job:
        assert job_config.source_format == bigquery.SourceFormat.PARQUET
        assert job_config.write_disposition == bigquery.WriteDisposition.WRITE_APPEND
        frame = pl.read_parquet(io.BytesIO(buffer.read()))
        if destination in self.schemas and self.schemas[destination] != job_config.schema:
            raise BadRequest(f"Provided Schema does not match Table {destination}")
        self.schemas[destination] = job_config.schema
        self.tables[destination] = (
            pl.concat([self.tables[destination], frame]) if destination in self.tables else frame
        )
        return _Job()

    def query(self, sql: str) -> _Job:
        if sql.startswith("CREATE SCHEMA IF NOT EXISTS"):
            return _Job()
        name = TABLE.search(sql)["table"]
        if name not in self.tables:
            raise NotFound(f"Table {name} not found")
        where = sql.split("WHERE", 1)[1] if "WHERE" in sql else None
        table = self.tables[name]
        if sql.startswith("TRUNCATE TABLE"):
            self.tables[name] = table.clear()
            return _Job()
        if sql.startswith("DELETE FROM"):
            self.tables[name] = table.sql(f"SELECT * FROM self WHERE NOT ({where})")
            return _Job()
        columns = sql.removeprefix("SELECT").split("FROM", 1)[0]
        return _Job(table.sql(f"SELECT {columns} FROM self" + (f" WHERE {where}" if where else "")))


@pytest.fixture
def bigquery_fake(monkeypatch) -> FakeBigQuery:
    fake = FakeBigQuery()

    @contextmanager
    def connect(_context, _table_slice):
        yield fake

    monkeypatch.setattr(BigQueryClient, "connect", staticmethod(connect))
    return fake


def test_bigquery_schema_names_each_column_type():
    schema = pl.Schema(
        {
            "track_id": pl.String,
            "plays": pl.Int64,
            "score": pl.Float64,
            "liked": pl.Boolean,
            "released": pl.Date,
            "seen_at": pl.Datetime("us", "UTC"),
            "local_time": pl.Datetime("us"),
            "tags": pl.List(pl.String),
            "slots": pl.Struct({"genre": pl.String, "bpm": pl.Int32}),
        }
    )
    fields = {
        f.name: (f.field_type, f.mode, [(g.name, g.field_type) for g in f.fields])
        for f in bigquery_schema(schema)
    }
    assert fields == {
        "track_id": ("STRING", "NULLABLE", []),
        "plays": ("INT64", "NULLABLE", []),
        "score": ("FLOAT64", "NULLABLE", []),
        "liked": ("BOOL", "NULLABLE", []),
        "released": ("DATE", "NULLABLE", []),
        "seen_at": ("TIMESTAMP", "NULLABLE", []),
        "local_time": ("DATETIME", "NULLABLE", []),
        "tags": ("STRING", "REPEATED", []),
        "slots": ("RECORD", "NULLABLE", [("genre", "STRING"), ("bpm", "INT64")]),
    }
    with pytest.raises(BigQuerySchemaError, match="turns: a list of lists"):
        bigquery_schema(pl.Schema({"turns": pl.List(pl.List(pl.String))}))
    with pytest.raises(BigQuerySchemaError, match="big: polars type UInt64 has no BigQuery type"):
        bigquery_schema(pl.Schema({"big": pl.UInt64}))


GENERATORS = dg.StaticPartitionsDefinition(["grammar-v1", "llm-v1"])


def _tables(rows: dict[str, list[str]]):
    """An unpartitioned and a partitioned asset whose rows come from `rows` (by partition key), and a reader."""

    @dg.asset(name="synthetic", partitions_def=GENERATORS, metadata={"partition_expr": "dagster_partition"})
    def synthetic(context: dg.AssetExecutionContext) -> pl.DataFrame:
        texts = rows[context.partition_key]
        return pl.DataFrame({"text": texts, "tags": [[t.split()[0]] for t in texts]})

    @dg.asset(name="catalog")
    def catalog() -> pl.DataFrame:
        return pl.DataFrame({"track_id": rows["catalog"]})

    @dg.asset(partitions_def=GENERATORS, metadata={"partition_expr": "dagster_partition"})
    def reader(synthetic: pl.DataFrame) -> pl.DataFrame:
        return synthetic

    return [synthetic, catalog, reader]


def _materialize(assets, selection: str, partition: str | None = None) -> dg.ExecuteInProcessResult:
    io_manager = PolarsBigQueryIOManager(project="setlist-test", dataset="setlist")
    return dg.materialize(
        assets, selection=selection, partition_key=partition, resources={"io_manager": io_manager}
    )


def test_partitioned_writes_keep_each_partition_and_a_rewrite_replaces_only_its_own(bigquery_fake):
    rows = {"grammar-v1": ["slow piano", "loud drums"], "llm-v1": ["calm strings"], "catalog": []}
    assets = _tables(rows)
    _materialize(assets, "synthetic", "grammar-v1")
    _materialize(assets, "synthetic", "llm-v1")
    rows["grammar-v1"] = ["soft guitar"]
    _materialize(assets, "synthetic", "grammar-v1")  # a rerun of one partition
    _materialize(assets, "synthetic", "grammar-v1")  # and again, unchanged: idempotent

    stored = bigquery_fake.tables["setlist-test.setlist.synthetic"].sort("text")
    assert stored.rows() == [("calm strings", ["calm"], "llm-v1"), ("soft guitar", ["soft"], "grammar-v1")]
    read = _materialize(assets, "reader", "grammar-v1").output_for_node("reader")
    assert_frame_equal(read, pl.DataFrame({"text": ["soft guitar"], "tags": [["soft"]]}))
    assert [
        (f.name, f.field_type, f.mode) for f in bigquery_fake.schemas["setlist-test.setlist.synthetic"]
    ] == [
        ("text", "STRING", "NULLABLE"),
        ("tags", "STRING", "REPEATED"),
        ("dagster_partition", "STRING", "NULLABLE"),
    ]


def test_an_unpartitioned_rewrite_replaces_the_table(bigquery_fake):
    rows = {"catalog": ["t1", "t2"]}
    assets = _tables(rows)
    _materialize(assets, "catalog")
    rows["catalog"] = ["t3"]
    _materialize(assets, "catalog")
    assert bigquery_fake.tables["setlist-test.setlist.catalog"]["track_id"].to_list() == ["t3"]


def test_a_column_that_changes_type_is_refused_by_name(bigquery_fake):
    rows = {"catalog": ["t1"]}
    assets = _tables(rows)
    _materialize(assets, "catalog")
    bad = dg.asset(name="catalog")(lambda: pl.DataFrame({"track_id": [[1]]}))  # same table, list of ints
    with pytest.raises(BadRequest, match="does not match"):
        _materialize([bad, *assets[:1]], "catalog")


# --- GCS: MLflow artifact locations and files through fsspec ------------------------------------------


def test_experiments_put_their_artifacts_under_the_gcs_root(tmp_path):
    tracking = MLflowTracking(
        tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
        artifact_root="gs://setlist-test-bucket/prod/mlflow",
    )
    experiment = MlflowClient(tracking.tracking_uri).get_experiment(
        tracking.experiment_id("eval-golden_curated")
    )
    assert experiment.artifact_location == "gs://setlist-test-bucket/prod/mlflow/eval-golden_curated"


def test_parquet_files_under_a_bucket_url_are_written_per_partition_and_overwritten(tmp_path):
    """fsspec's memory filesystem stands in for gs://: the same UPath calls, no network."""
    base = "memory://setlist-test-bucket/assets"
    io_manager = ParquetIOManager(base_dir=base)
    rows = {"grammar-v1": ["slow piano"], "llm-v1": ["calm strings"], "catalog": ["t1"]}
    assets = _tables(rows)
    for partition in ("grammar-v1", "llm-v1", "grammar-v1"):
        dg.materialize(
            assets, selection="synthetic", partition_key=partition, resources={"io_manager": io_manager}
        )
    rows["catalog"] = ["t2"]
    for _ in range(2):
        dg.materialize(assets, selection="catalog", resources={"io_manager": io_manager})
    files = sorted(str(p.relative_to(UPath(base))) for p in UPath(base).rglob("*.parquet"))
    assert files == ["catalog.parquet", "synthetic/grammar-v1.parquet", "synthetic/llm-v1.parquet"]
    with UPath(base, "catalog.parquet").open("rb") as f:
        assert pl.read_parquet(f)["track_id"].to_list() == ["t2"]
