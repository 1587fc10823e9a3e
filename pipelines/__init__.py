"""The commands and what runs them, above `transforms` and `policies`.

The modules at this level are the commands, each a short alias of the module that holds it, so a path says the
stage and a command line stays as it was: `python -m pipelines.moderate` (and `pipelines.nightly`, what
`./run_batch.sh` runs), `pipelines.report`, `pipelines.export`, `pipelines.review`, `pipelines.calibrate`,
`pipelines.evaluate`, `pipelines.evaluate_modes`, `pipelines.evaluate_adaptation`, `pipelines.compare_evaluations`.
The sub-packages, bottom to top (each imports only those before it; `tests/test_import_graph.py` checks it):

- `pipelines.job`: the nightly job: the Beam pipeline, its options and runners, what a night reads, the run
  contract (lease, books, manifest, exit codes) and the console.
- `pipelines.audit`: what auditors read after a run: the report, the Moderation export, the review loop.
- `pipelines.evaluation`: verdict quality on the public benchmark sets, calibration, the modes compared.
"""

import transforms  # noqa: F401  (first: drops a notice Beam logs at import)
