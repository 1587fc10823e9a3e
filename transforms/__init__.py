"""The pipeline's transforms, one sub-package per stage, imports flowing one way (each imports only those above it
in this list, and `policies`):

- `transforms.records`: the value types every stage passes on (conversations, moderation units, dead letters).
- `transforms.stores`: the run's local state and the primitives of its books.
- `transforms.io`: reading conversation logs from Parquet, writing partitioned verdicts and dead letters.
- `transforms.engines`: the engine seam (`protocol`), the vLLM and fake engines, the embedded models.
- `transforms.prompts`: policy + conversation → the RSafe prompt and moderation units.
- `transforms.judging`: units → verdicts: the verdict modes, parsing, caches and the judging DoFn.

`tests/test_import_graph.py` checks the order, function-level imports included. Importing the package drops one
line Beam logs while it is imported (`apitools not found, and bigquery client libraries are not available ...`):
the job uses no BigQuery, and every command printed it. `pipelines` and `training` import this package first,
before anything imports Beam.
"""

from __future__ import annotations

import logging


class _DropBeamBigQueryNotice(logging.Filter):
    """Drops Beam's import-time notice that its BigQuery clients are unavailable."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("apitools not found")


logging.getLogger().addFilter(_DropBeamBigQueryNotice())
