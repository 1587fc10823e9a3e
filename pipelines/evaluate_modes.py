"""`python -m pipelines.evaluate_modes`: the evaluation once per verdict mode, on the same items.

The command lives in `pipelines.evaluation.evaluate_modes`."""

import sys

from pipelines.evaluation.evaluate_modes import main

if __name__ == "__main__":
    sys.exit(main())
