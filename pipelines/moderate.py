"""`python -m pipelines.moderate`: the nightly moderation job (Beam pipeline: read logs, judge, write verdicts).

The command lives in `pipelines.job.moderate`."""

import sys

from pipelines.job.moderate import main

if __name__ == "__main__":
    sys.exit(main())
