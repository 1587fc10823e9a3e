"""`python -m pipelines.render_prompt`: the exact prompt the job builds for a tenant and a conversation.

The command lives in `pipelines.job.render_prompt`."""

import sys

from pipelines.job.render_prompt import main

if __name__ == "__main__":
    sys.exit(main())
