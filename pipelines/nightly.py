"""`python -m pipelines.nightly`: `./run_batch.sh`'s entry point: the job with a quiet console and a per-tenant summary.

The command lives in `pipelines.job.quiet_run`."""

import sys

from pipelines.job.quiet_run import main

if __name__ == "__main__":
    sys.exit(main())
