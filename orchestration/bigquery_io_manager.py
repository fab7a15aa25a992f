"""Polars tables in BigQuery, for the `gcp` profile.

dagster-gcp ships BigQuery IO managers for pandas and PySpark only. This bridges polars through
Parquet instead of pandas: a table is written as Parquet bytes with a BigQuery load job and read back
as Arrow, so no pandas copy is made either way. dagster-gcp's `BigQueryIOManager` still does the rest
(table naming, partition cleanup before a rewrite, credentials). The load job names the table's schema
(`bigquery_schema`) instead of letting BigQuery guess it from the file, so a column keeps one type.
"""

import io
from collections.abc import Sequence

import dagster as dg
import polars as pl
from dagster._core.storage.db_io_manager import DbTypeHandler, TableSlice
from dagster_gcp import BigQueryIOManager
from dagster_gcp.bigquery.io_manager import BigQueryClient
from google.cloud import bigquery

from orchestration.automation import PARTITION_COLUMN

# polars type -> BigQuery type; lists become REPEATED fields and structs RECORDs (bigquery_field).
_SCALAR_TYPES: dict[type[pl.DataType], str] = {
    pl.String: "STRING",
    pl.Categorical: "STRING",
    pl.Enum: "STRING",
    pl.Boolean: "BOOL",
    **dict.fromkeys((pl.Int8, pl.Int16, pl.Int32, pl.Int64, pl.UInt8, pl.UInt16, pl.UInt32), "INT64"),
    pl.Float32: "FLOAT64",
    pl.Float64: "FLOAT64",
    pl.Decimal: "BIGNUMERIC",
    pl.Date: "DATE",
    pl.Time: "TIME",
    pl.Binary: "BYTES",
}


class BigQuerySchemaError(TypeError):
    """A column whose polars type has no BigQuery type; the message names the column."""


def bigquery_field(name: str, dtype: pl.DataType) -> bigquery.SchemaField:
    if isinstance(dtype, pl.List | pl.Array):
        if isinstance(dtype.inner, pl.List | pl.Array):
            raise BigQuerySchemaError(
                f"{name}: a list of lists ({dtype}) has no BigQuery type (no nested ARRAY)"
            )
        inner = bigquery_field(name, dtype.inner)
        return bigquery.SchemaField(name, inner.field_type, mode="REPEATED", fields=inner.fields)
    if isinstance(dtype, pl.Struct):
        return bigquery.SchemaField(
            name, "RECORD", fields=[bigquery_field(f.name, f.dtype) for f in dtype.fields]
        )
    if isinstance(dtype, pl.Datetime):  # an instant when it has a zone, a wall-clock time without one
        return bigquery.SchemaField(name, "TIMESTAMP" if dtype.time_zone else "DATETIME")
    if (kind := _SCALAR_TYPES.get(dtype.base_type())) is None:
        raise BigQuerySchemaError(f"{name}: polars type {dtype} has no BigQuery type")
    return bigquery.SchemaField(name, kind)


def bigquery_schema(schema: pl.Schema) -> list[bigquery.SchemaField]:
    return [bigquery_field(name, dtype) for name, dtype in schema.items()]


class PolarsBigQueryTypeHandler(DbTypeHandler[pl.DataFrame]):
    def handle_output(
        self,
        context: dg.OutputContext,
        table_slice: TableSlice,
        obj: pl.DataFrame,
        connection: bigquery.Client,
    ) -> dict[str, object]:
        if context.has_asset_partitions:
            obj = obj.with_columns(pl.lit(context.asset_partition_key).alias(PARTITION_COLUMN))
        try:
            schema = bigquery_schema(obj.schema)
        except BigQuerySchemaError as err:
            raise BigQuerySchemaError(f"{context.asset_key.to_user_string()}: {err}") from None
        buffer = io.BytesIO()
        obj.write_parquet(buffer)
        buffer.seek(0)
        config = bigquery.LoadJobConfig(
            source_format=bigquery.SourceFormat.PARQUET,
            write_disposition=bigquery.WriteDisposition.WRITE_APPEND,  # the IO manager already cleared the slice
            schema=schema,
            parquet_options=bigquery.format_options.ParquetOptions.from_api_repr(
                {"enableListInference": True}
            ),
        )
        destination = f"{table_slice.database}.{table_slice.schema}.{table_slice.table}"
        connection.load_table_from_file(buffer, destination, job_config=config).result()
        return {"dagster/row_count": obj.height}

    def load_input(
        self, context: dg.InputContext, table_slice: TableSlice, connection: bigquery.Client
    ) -> pl.DataFrame:
        table = connection.query(BigQueryClient.get_select_statement(table_slice)).to_arrow()
        frame = pl.from_arrow(table)
        return frame.drop(PARTITION_COLUMN, strict=False)

    @property
    def supported_types(self) -> Sequence[type[object]]:
        return [pl.DataFrame]


class PolarsBigQueryIOManager(BigQueryIOManager):
    """Set `partition_expr` metadata to PARTITION_COLUMN on partitioned assets (the gcp profile does)."""

    @staticmethod
    def type_handlers() -> Sequence[DbTypeHandler]:
        return [PolarsBigQueryTypeHandler()]

    @staticmethod
    def default_load_type() -> type | None:
        return pl.DataFrame
