"""The nightly job: `moderate` builds and runs the Beam pipeline (`options`, `runners`, `dask_support`, `usage`);
what a night reads (`plan`, `night_input`, `consumed_files`, `backfill` for day-by-day runs); the run contract:
`run_lease` (`lease_holder`), `resume_keys` (what earlier runs published), `books` (the run's books: counted by
what it publishes, checked at its end), `manifest` and `exit_codes`; the console (`console`; `quiet_run`, the job
behind `./run_batch.sh`: a quiet console and a per-tenant summary) and `gc_tuning`. Imports `transforms` and
`policies` only, nothing else in `pipelines`.
"""
