"""`python -m pipelines.evaluate_adaptation`: the policy-adaptation check (a category removed from the policy).

The command lives in `pipelines.evaluation.evaluate_adaptation`."""

import sys

from pipelines.evaluation.evaluate_adaptation import main

if __name__ == "__main__":
    sys.exit(main())
