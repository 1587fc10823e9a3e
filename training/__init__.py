"""The guard's training: RSafe's two stages (guided-reasoning warm start, then rule-based GRPO) on the job's
own renderer and parser, plus the data builder, the reward, export and curves. `python -m training --help`."""

import transforms  # noqa: F401  (first: drops a notice Beam logs at import)
