"""`python -m pipelines.render_prompt --tenant T --conversation FILE`: the exact prompt the job builds for a tenant's
policy and a conversation (the same unit-making and budget fitting, with the model's tokenizer)."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from collections.abc import Sequence

from smart_open import open as smart_open

from policies import DEFAULT_POLICY_DIR, DEFAULT_TENANTS_FILE, PolicyError, load_policy_registry
from transforms.engines.vllm_engine import VllmEngineSpec
from transforms.io.normalise import RawMessage, normalise_messages
from transforms.prompts.units import make_units
from transforms.records import Conversation


def _read_messages(path: str) -> list:
    """Read a conversation file: `{"messages": [...]}` or a plain list of message objects, normalised as the job
    normalises them (`transforms.io.normalise`: role aliases, tool messages and calls, content parts, ...)."""
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


def render(args: argparse.Namespace) -> int:
    """Print the exact prompt the job builds for this tenant's policy and conversation: the same unit-making and
    budget-fitting code (with the model's tokenizer), the unit of `--level` for the judged turn."""
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
    """The command's argument parser."""
    parser = argparse.ArgumentParser(prog="python -m pipelines.render_prompt", description=__doc__.split("\n\n")[0])
    parser.add_argument("--tenant", required=True, help="tenant id to look up")
    parser.add_argument("--conversation", required=True, metavar="FILE", help="conversation JSON file")
    parser.add_argument("--level", choices=("prompt", "response"), default="prompt")
    parser.add_argument("--template", choices=("rsafe", "rsafe-categories"), default="rsafe")
    parser.add_argument(
        "--policies",
        nargs="+",
        default=[str(DEFAULT_POLICY_DIR)],
        metavar="PATH",
        help="policy files or directories (default: the shipped definitions)",
    )
    parser.add_argument("--tenants", default=str(DEFAULT_TENANTS_FILE), metavar="FILE")
    parser.add_argument("--strict", action="store_true", help="fail for tenants not in the tenants file")
    parser.add_argument("--model", help="model whose tokenizer fits the context budget (default: the embedded guard)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Print the prompt; exit status 0 on success, 1 on a policy or input error."""
    args = build_parser().parse_args(argv)
    try:
        return render(args)
    except PolicyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
