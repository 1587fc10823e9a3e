"""`python -m pipelines.nightly`: `./run_batch.sh`'s entry point: the job with a quiet console and a per-tenant summary.

The command lives in `pipelines.job.nightly`."""

import sys

from pipelines.job.nightly import main

if __name__ == "__main__":
    sys.exit(main())
