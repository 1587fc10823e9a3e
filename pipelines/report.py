"""`python -m pipelines.report`: the audit report (HTML / Markdown) over a run's published verdicts.

The command lives in `pipelines.audit.report`."""

import sys

from pipelines.audit.report import main

if __name__ == "__main__":
    sys.exit(main())
