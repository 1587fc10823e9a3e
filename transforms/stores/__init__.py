"""The run's local state and the primitives of its books, below everything that reads, renders or judges.

`ledger` publishes a bundle's counts as one idempotent record (the books `pipelines.job.books` adds up);
`telemetry` increments the runner's own metrics (telemetry, never the books); `progress` tracks units planned and
judged in one worker process; `disk_index` is the SQLite key index a streaming run remembers what it saw in.
Imports nothing else from the project.
"""
