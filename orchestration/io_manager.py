"""Polars tables as Parquet files under the Setlist home (or any fsspec URL, e.g. gs://).

Built on Dagster's `UPathIOManager` rather than dagster-polars, whose 0.27 IO managers call
`scan_parquet(rechunk=...)`, which polars 2 removed. `UPathIOManager` already handles
partitions, paths and loading several partitions at once; this class only reads and writes.
"""

import os
import uuid

import dagster as dg
import polars as pl
from upath import UPath


class PolarsParquetIOManager(dg.UPathIOManager):
    extension = ".parquet"

    def dump_to_path(self, context: dg.OutputContext, obj: pl.DataFrame, path: UPath) -> None:
        if not isinstance(obj, pl.DataFrame):
            raise TypeError(
                f"{context.asset_key.to_user_string()}: expected a polars DataFrame, got {type(obj)}"
            )
        if path.protocol in ("", "file"):
            # Write beside the target and rename, so a concurrent reader never sees half a file.
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
            obj.write_parquet(str(tmp))
            os.replace(tmp, path)
        else:
            with path.open("wb") as f:
                obj.write_parquet(f)

    def load_from_path(self, context: dg.InputContext, path: UPath) -> pl.DataFrame | pl.LazyFrame:
        if context.dagster_type.typing_type is pl.LazyFrame:
            return pl.scan_parquet(str(path))
        return pl.read_parquet(str(path))

    def get_metadata(self, context: dg.OutputContext, obj: pl.DataFrame) -> dict[str, object]:
        return {"dagster/row_count": obj.height, "columns": ", ".join(obj.columns)}


class ParquetIOManager(dg.ConfigurableIOManagerFactory):
    """Where Setlist keeps its tables: a local folder by default, a bucket URL in production."""

    base_dir: str

    def create_io_manager(self, context: dg.InitResourceContext) -> PolarsParquetIOManager:
        return PolarsParquetIOManager(base_path=UPath(self.base_dir))
