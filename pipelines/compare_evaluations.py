"""`python -m pipelines.compare_evaluations`: evaluation runs side by side.

The command lives in `pipelines.evaluation.compare_evaluations`."""

import sys

from pipelines.evaluation.compare_evaluations import main

if __name__ == "__main__":
    sys.exit(main())
