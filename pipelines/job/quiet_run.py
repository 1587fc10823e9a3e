"""The job run quietly, `./run_batch.sh`'s entry point: a quiet console and a per-tenant summary around it.

    python -m pipelines.nightly [any option of python -m pipelines.moderate] [--verbose]

A usage error (an unknown option, a malformed or invalid value, a contradictory range of days) is one line on
the terminal and exit code 2, before anything is written. Then the console is set up before vLLM is imported (so
its import-time warnings go to the log file too): the terminal gets the job's own lines, progress included; the
full log is `OUT/_runs/<run_id>.log` (path printed first). The exit status is the job's (`pipelines.job.exit_codes`).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from pipelines.job.console import log_file_for, new_run_id, quiet_console, tenant_table

log = logging.getLogger("rsafe_batch")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if {"-h", "--help"} & set(argv):
        from pipelines.job.moderate import print_help

        print_help()
        return 0
    from pipelines.job.exit_codes import USAGE, exit_code_for
    from pipelines.job.usage import check_usage

    try:
        check_usage(argv)
    except ValueError as exc:
        print(f"usage error (exit {USAGE}): {exc}", file=sys.stderr)
        return USAGE
    early = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    early.add_argument("--output", "--output_dir", dest="output", default="out")
    early.add_argument("--run-id", "--run_id", dest="run_id")
    early.add_argument("--verbose", action="store_true")
    known, _ = early.parse_known_args(argv)
    if not known.run_id:
        known.run_id = new_run_id()
        argv += ["--run-id", known.run_id]
    log_path = log_file_for(known.output, known.run_id)
    quiet_console(log_path, known.verbose)
    log.info("run %s: full log in %s", known.run_id, log_path)

    from pipelines.job.moderate import run

    try:
        manifest = run(argv)
    except Exception as exc:
        code = exit_code_for(exc)
        log.error("run failed (exit %d): %s: %s (full log: %s)", code, type(exc).__name__, exc, log_path)
        return code
    log.info("run %s succeeded: %s", manifest.run_id, manifest.summary_line())
    for line in tenant_table(manifest.per_tenant):
        log.info("  %s", line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
