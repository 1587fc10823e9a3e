"""`python -m pipelines.export`: verdicts exported in the OpenAI Moderation format.

The command lives in `pipelines.audit.export`."""

import sys

from pipelines.audit.export import main

if __name__ == "__main__":
    sys.exit(main())
