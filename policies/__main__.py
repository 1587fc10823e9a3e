"""Command line: `python -m policies validate PATH...` and `python -m policies render --tenant T ...`."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from smart_open import open as smart_open

from policies.model import PolicyError
from policies.registry import DEFAULT_POLICY_DIR, DEFAULT_TENANTS_FILE, load_policies, load_policy_registry


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


def _read_messages(path: str) -> list:
    """Read a conversation file: `{"messages": [...]}` or a plain list of message objects, normalised as the job
    normalises them (`transforms.io.normalise`: role aliases, tool messages and calls, content parts, ...)."""
    from transforms.io.normalise import RawMessage, normalise_messages

    try:
        with smart_open(path, "r", encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError) as exc:
        raise PolicyError(f"{path}: cannot read conversation JSON: {exc}") from exc
    raw = data.get("messages") if isinstance(data, dict) else data
    if not isinstance(raw, list) or not raw:
        raise PolicyError(f'{path}: expected a non-empty list of messages or {{"messages": [...]}}')
    for index, item in enumerate(raw):
        if not isinstance(item, dict):
            raise PolicyError(f"{path}: messages[{index}]: expected an object with role and content, got {item!r:.80}")
    normalised = normalise_messages(
        [
            RawMessage(m.get("role"), m.get("content"), m.get("tool_calls") or m.get("function_call"), m.get("name"))
            for m in raw
        ]
    )
    for repair in normalised.repairs:
        print(f"input repair: {repair}", file=sys.stderr)
    if not normalised.messages:
        raise PolicyError(f"{path}: nothing left to judge ({'; '.join(normalised.repairs)})")
    return list(normalised.messages)


def _render(args: argparse.Namespace) -> int:
    """Print the exact prompt the job builds for this tenant's policy and conversation: the same unit-making and
    budget-fitting code (with the model's tokenizer), the unit of `--level` for the judged turn."""
    import datetime as dt

    from transforms.engines.vllm_engine import VllmEngineSpec
    from transforms.prompts.units import make_units
    from transforms.records import Conversation

    registry = load_policy_registry(args.policies, args.tenants, reject_unknown_tenants=args.strict)
    policy = registry.for_tenant(args.tenant)
    if policy is None:
        raise PolicyError(f"tenant {args.tenant!r} is not in the tenants file (--strict)")
    if not registry.is_known_tenant(args.tenant):
        print(f"note: tenant {args.tenant!r} not listed; using default policy", file=sys.stderr)
    print(f"policy {policy.id} version {policy.version}", file=sys.stderr)
    messages = _read_messages(args.conversation)
    created = dt.datetime.now(dt.UTC)
    conversation = Conversation("render", args.tenant, created, tuple(messages), args.conversation, 0)
    spec = VllmEngineSpec(model=args.model)
    level_only = policy.model_copy(update={"units": (args.level,)})
    units = make_units(
        conversation, level_only, args.template, "render", spec.load_token_counter(), spec.load_special_tokens()
    )
    if not units:
        raise PolicyError(f"{args.conversation}: no {args.level}-level turn to judge in this conversation")
    print(units[-1].prompt)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for both subcommands."""
    parser = argparse.ArgumentParser(prog="python -m policies", description=__doc__)
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

    render = commands.add_parser("render", help="print the prompt the model would get")
    render.add_argument("--tenant", required=True, help="tenant id to look up")
    render.add_argument("--conversation", required=True, metavar="FILE", help="conversation JSON file")
    render.add_argument("--level", choices=("prompt", "response"), default="prompt")
    render.add_argument("--template", choices=("rsafe", "rsafe-categories"), default="rsafe")
    render.add_argument(
        "--policies",
        nargs="+",
        default=[str(DEFAULT_POLICY_DIR)],
        metavar="PATH",
        help="policy files or directories (default: the shipped definitions)",
    )
    render.add_argument("--tenants", default=str(DEFAULT_TENANTS_FILE), metavar="FILE")
    render.add_argument("--strict", action="store_true", help="fail for tenants not in the tenants file")
    render.add_argument("--model", help="model whose tokenizer fits the context budget (default: the embedded guard)")
    render.set_defaults(handler=_render)
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
