"""`python -m pipelines.calibrate`: fit per-tenant calibration maps from labelled verdicts.

The command lives in `pipelines.evaluation.calibrate`."""

import sys

from pipelines.evaluation.calibrate import main

if __name__ == "__main__":
    sys.exit(main())
