"""The feature table: one row per window, one column per (channel, feature).

- :mod:`pipeline.table.spec`: :class:`FeatureTableSpec`, what defines a table;
- :mod:`pipeline.table.build`: the one graph construction (:func:`plan_table`), the lazy
  table (:func:`feature_table`) and one recording's table in memory
  (:func:`recording_features`);
- :mod:`pipeline.table.parquet`: the one file format (Parquet, one file per recording, the
  spec and fingerprints in the key-value metadata), its writers and its reader.
"""

from typing import TYPE_CHECKING

from pipeline._lazy import lazy_exports

# The names below are imported on first use (PEP 562): the task check and an unchanged rerun
# need only FeatureTableSpec, not the graph construction and the Parquet writer (dask.array,
# dask.dataframe, xarray, pyarrow.parquet).
_EXPORTS = {
    "ID_COLUMNS": "pipeline.table.build",
    "TablePlan": "pipeline.table.build",
    "feature_table": "pipeline.table.build",
    "plan_table": "pipeline.table.build",
    "recording_features": "pipeline.table.build",
    "METADATA_KEY": "pipeline.table.parquet",
    "feature_table_metadata": "pipeline.table.parquet",
    "read_feature_table": "pipeline.table.parquet",
    "run_features": "pipeline.table.parquet",
    "table_schema": "pipeline.table.parquet",
    "table_writes": "pipeline.table.parquet",
    "write_feature_table": "pipeline.table.parquet",
    "write_recording_features": "pipeline.table.parquet",
    "FeatureTableSpec": "pipeline.table.spec",
}

if TYPE_CHECKING:  # the static view of the same names
    from pipeline.table.build import (
        ID_COLUMNS,
        TablePlan,
        feature_table,
        plan_table,
        recording_features,
    )
    from pipeline.table.parquet import (
        METADATA_KEY,
        feature_table_metadata,
        read_feature_table,
        run_features,
        table_schema,
        table_writes,
        write_feature_table,
        write_recording_features,
    )
    from pipeline.table.spec import FeatureTableSpec


__getattr__, __dir__ = lazy_exports("pipeline.table", _EXPORTS, globals())


__all__ = [
    "ID_COLUMNS",
    "METADATA_KEY",
    "FeatureTableSpec",
    "TablePlan",
    "feature_table",
    "feature_table_metadata",
    "plan_table",
    "read_feature_table",
    "recording_features",
    "run_features",
    "table_schema",
    "table_writes",
    "write_feature_table",
    "write_recording_features",
]
