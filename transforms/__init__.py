"""The pipeline's transforms and its engine seam.

Importing the package drops one line Beam logs while it is imported (`apitools not found, and bigquery client
libraries are not available ...`): the job uses no BigQuery, and every command printed it. `pipelines`,
`policies` and `training` import this package first, before anything imports Beam.
"""

from __future__ import annotations

import logging


class _DropBeamBigQueryNotice(logging.Filter):
    """Drops Beam's import-time notice that its BigQuery clients are unavailable."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("apitools not found")


logging.getLogger().addFilter(_DropBeamBigQueryNotice())
