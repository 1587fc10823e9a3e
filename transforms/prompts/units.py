"""Conversation + tenant policy → moderation units (rendered, budget-fitted, keyed). Pure functions + a DoFn."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterator, Sequence

import apache_beam as beam

from policies import PolicyRegistry, ResolvedPolicy, tenant_id_problem
from transforms.engines.protocol import EngineSpec
from transforms.io.normalise import repair_kinds
from transforms.prompts.render import fit_conversation, render_from_lines, template_version
from transforms.records import DEAD_LETTER, Conversation, DeadLetter, Message, ModerationUnit
from transforms.stores.progress import PROGRESS
from transforms.stores.telemetry import REPAIR_COUNTER_PREFIX, UNKNOWN_TENANT_COUNTER, count

log = logging.getLogger(__name__)
_LEVEL_ROLE = {"prompt": "user", "response": "assistant"}


def judged_turns(messages: tuple[Message, ...], policy: ResolvedPolicy) -> list[tuple[str, int]]:
    """(level, message index) of every turn to judge: the last user turn and last assistant reply
    (`last_turn` scope) or every one of them (`every_turn`), for the levels the policy moderates."""
    found = []
    for level in ("prompt", "response"):
        if level not in policy.units:
            continue
        indexes = [i for i, m in enumerate(messages) if m.role == _LEVEL_ROLE[level]]
        found += [(level, i) for i in (indexes if policy.scope == "every_turn" else indexes[-1:])]
    return sorted(found, key=lambda item: item[1])


def stable_key(*parts: object) -> str:
    """A short sha256 over the parts, the same on every machine."""
    return hashlib.sha256("\x1f".join(str(p) for p in parts).encode("utf-8")).hexdigest()[:32]


def make_units(
    conversation: Conversation,
    policy: ResolvedPolicy,
    template: str,
    model_id: str,
    count_tokens: Callable[[str], int],
    special_tokens: Sequence[str] = (),
) -> list[ModerationUnit]:
    """Every moderation unit of a conversation under its tenant's policy (`special_tokens`: the model
    tokenizer's special/added token strings, which content may not spell).

    A unit's `turn_index` is the judged message's index as read (before normalisation dropped or split any).
    """
    version = template_version(template)
    date = conversation.date
    units = []
    for level, position in judged_turns(conversation.messages, policy):
        judged = conversation.messages[position]
        index = position if judged.source_index is None else judged.source_index
        fitted = fit_conversation(
            conversation.messages[: position + 1], level, policy.context_budget_tokens, count_tokens, special_tokens
        )
        prompt = render_from_lines(policy, fitted.lines, level, template)
        units.append(
            ModerationUnit(
                conversation_id=conversation.conversation_id,
                tenant_id=conversation.tenant_id,
                date=date,
                unit=level,
                turn_index=index,
                policy_id=policy.id,
                policy_version=policy.version,
                template_version=version,
                prompt=prompt,
                truncated_input=fitted.judged_turn_cut,
                context_turns_dropped=fitted.turns_dropped,
                source_file=conversation.source_file,
                source_rows=conversation.source_rows,
                on_parse_error=policy.on_parse_error,
                on_truncated=policy.on_truncated,
                reasoning_budget=policy.reasoning_budget_tokens,
                cascade_band=policy.cascade_band,
                allowed_codes=tuple(c.code for c in policy.categories),
                content_key=stable_key(prompt, policy.version, model_id, version),
                resume_key=stable_key(conversation.conversation_id, level, index, policy.version, model_id, version),
                input_repairs=conversation.input_repairs,
            )
        )
    return units


class MakeUnitsDoFn(beam.DoFn):
    """Conversation → its moderation units; a path-unsafe or (strictly) unknown tenant → a dead letter."""

    def __init__(self, registry: PolicyRegistry, template: str, model_id: str, engine_spec: EngineSpec) -> None:
        self._registry = registry
        self._template = template
        self._model_id = model_id
        self._engine_spec = engine_spec
        self._count_tokens: Callable[[str], int] | None = None
        self._special_tokens: tuple[str, ...] = ()
        self._unknown_logged: set[str] = set()

    def setup(self) -> None:
        self._count_tokens = self._engine_spec.load_token_counter()
        self._special_tokens = self._engine_spec.load_special_tokens()

    def process(self, conversation: Conversation) -> Iterator:
        problem = tenant_id_problem(conversation.tenant_id)
        policy = None if problem else self._registry.for_tenant(conversation.tenant_id)
        if problem or policy is None:
            kind = "unsafe_tenant_id" if problem else "unknown_tenant"
            message = problem or f"tenant {conversation.tenant_id!r} has no policy and unknown tenants are rejected"
            yield beam.pvalue.TaggedOutput(DEAD_LETTER, _dead_letter(conversation, "policy", kind, message, ""))
            return
        if not self._registry.is_known_tenant(conversation.tenant_id):
            self._note_unknown_tenant(conversation.tenant_id, policy.id)
        try:
            units = make_units(
                conversation, policy, self._template, self._model_id, self._count_tokens, self._special_tokens
            )
        except Exception as exc:
            yield beam.pvalue.TaggedOutput(
                DEAD_LETTER,
                _dead_letter(conversation, "render", "render_error", f"{type(exc).__name__}: {exc}", policy.version),
            )
            return
        if not units:
            message = f"policy {policy.id!r} moderates {list(policy.units)} and the conversation has no such turn"
            yield beam.pvalue.TaggedOutput(
                DEAD_LETTER, _dead_letter(conversation, "policy", "nothing_to_judge", message, policy.version)
            )
            return
        count("rows_to_units", conversation.tenant_id, conversation.source_rows)
        PROGRESS.saw(conversation.source_rows, len(units))
        for kind in sorted(repair_kinds(conversation.input_repairs)):  # conversations judged with such a repair
            count(f"{REPAIR_COUNTER_PREFIX}{kind}", conversation.tenant_id)
        yield from units

    def _note_unknown_tenant(self, tenant_id: str, policy_id: str) -> None:
        """Count a conversation of a tenant the tenants file does not list; log the tenant once per worker."""
        count(UNKNOWN_TENANT_COUNTER, tenant_id)
        if tenant_id in self._unknown_logged:
            return
        self._unknown_logged.add(tenant_id)
        typo = self._registry.likely_typo_of(tenant_id)
        hint = f" (likely a typo of the listed tenant {typo!r})" if typo else ""
        log.warning("tenant %r is not in the tenants file%s: judged under policy %r", tenant_id, hint, policy_id)


def _dead_letter(conversation: Conversation, stage: str, kind: str, message: str, policy_version: str) -> DeadLetter:
    where = f"{conversation.source_file} row {conversation.source_row} (conversation {conversation.conversation_id!r})"
    return DeadLetter.for_conversation(conversation, stage, kind, f"{where}: {message}", scope=policy_version)
