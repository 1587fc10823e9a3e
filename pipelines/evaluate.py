"""`python -m pipelines.evaluate`: verdict quality on the public safety benchmarks, through the job itself.

The command lives in `pipelines.evaluation.evaluate`."""

import sys

from pipelines.evaluation.evaluate import main

if __name__ == "__main__":
    sys.exit(main())
