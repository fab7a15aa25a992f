"""Polars tables in BigQuery, for the `gcp` profile.

dagster-gcp ships BigQuery IO managers for pandas and PySpark only. This bridges polars through
Parquet instead of pandas: a table is written as Parquet bytes with a BigQuery load job and read back
as Arrow, so no pandas copy is made either way. dagster-gcp's `BigQueryIOManager` still does the rest
(table naming, partition cleanup before a rewrite, credentials).
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
        buffer = io.BytesIO()
        obj.write_parquet(buffer)
        buffer.seek(0)
        config = bigquery.LoadJobConfig(
            source_format=bigquery.SourceFormat.PARQUET,
            write_disposition=bigquery.WriteDisposition.WRITE_APPEND,  # the IO manager already cleared the slice
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
