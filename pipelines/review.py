"""`python -m pipelines.review`: the human-review loop: export units to label, import the labels.

The command lives in `pipelines.audit.review`."""

import sys

from pipelines.audit.review import main

if __name__ == "__main__":
    sys.exit(main())
