"""The job: the launcher, its options, the run contract (lease, books, manifest) and the command-line tools."""

import transforms  # noqa: F401  (first: drops a notice Beam logs at import)
