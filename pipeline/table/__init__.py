"""The feature table: one row per window, one column per (channel, feature).

- :mod:`pipeline.table.spec`: :class:`FeatureTableSpec`, what defines a table;
- :mod:`pipeline.table.build`: the one graph construction (:func:`plan_table`), the lazy
  table (:func:`feature_table`) and one recording's table in memory
  (:func:`recording_features`);
- :mod:`pipeline.table.parquet`: the one file format (Parquet, one file per recording, the
  spec and fingerprints in the key-value metadata), its writers and its reader.
"""

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
