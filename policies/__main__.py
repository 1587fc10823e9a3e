"""Command line: `python -m policies validate PATH...` checks policy files (and a tenants file).

The prompt the job builds for a tenant is printed by `python -m pipelines.render_prompt` (it needs the job's
renderer and the model's tokenizer; `policies` imports nothing above it)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from policies.model import PolicyError
from policies.registry import DEFAULT_POLICY_DIR, load_policies, load_policy_registry


def _validate(args: argparse.Namespace) -> int:
    """Validate policy files/dirs (and a tenants file if given); print each policy id and version."""
    if args.tenants:
        registry = load_policy_registry(args.paths, args.tenants)
        policies = registry.policies()
    else:
        policies = load_policies(args.paths, parents=() if args.standalone else [str(DEFAULT_POLICY_DIR)])
    for policy in policies.values():
        print(f"{policy.id}\t{policy.version}\t{len(policy.categories)} categories")
    if args.tenants:
        print(f"tenants: {len(registry.tenants())} mapped, default policy {registry.default_policy_id}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (one subcommand, `validate`)."""
    parser = argparse.ArgumentParser(
        prog="python -m policies",
        description=__doc__.split("\n\n")[0],
        epilog="The prompt the job builds for a tenant: python -m pipelines.render_prompt --help",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    validate = commands.add_parser("validate", help="validate policy files and print id + version")
    validate.add_argument("paths", nargs="+", metavar="PATH", help="policy files or directories (local/gs/s3)")
    validate.add_argument("--tenants", metavar="FILE", help="also validate this tenants file")
    validate.add_argument(
        "--standalone",
        action="store_true",
        help="resolve `extends` only among PATHs (default: the shipped policies can be extended too)",
    )
    validate.set_defaults(handler=_validate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; exit status 0 on success, 1 on a policy or input error."""
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except PolicyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
