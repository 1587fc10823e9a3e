"""Pydantic models for safety policies: what a policy file may say, and the resolved policy the job uses.

`PolicyDocument` is one file as written (it may `extends` another policy and patch its categories);
`ResolvedPolicy` is the result after inheritance, with a content-derived `version`.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

Unit = Literal["prompt", "response"]
Scope = Literal["last_turn", "every_turn"]
FailureVerdict = Literal["flag", "unsafe", "safe"]

DEFAULT_UNITS: tuple[Unit, ...] = ("prompt", "response")
DEFAULT_SCOPE: Scope = "last_turn"
DEFAULT_CONTEXT_BUDGET_TOKENS = 1024
DEFAULT_FAILURE_VERDICT: FailureVerdict = "flag"

# The OpenAI Moderation API's category names: what a policy code may be mapped onto for the compatible export.
MODERATION_API_CATEGORIES: tuple[str, ...] = (
    "harassment",
    "harassment/threatening",
    "hate",
    "hate/threatening",
    "illicit",
    "illicit/violent",
    "self-harm",
    "self-harm/intent",
    "self-harm/instructions",
    "sexual",
    "sexual/minors",
    "violence",
    "violence/graphic",
)
MAX_TENANT_ID_LENGTH = 64
_SAFE_ID = re.compile(r"[A-Za-z0-9._-]+")
_CATEGORY_CODE = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,15}")


class PolicyError(ValueError):
    """A policy or tenants file is invalid; the message names the file, the field and the problem."""


def tenant_id_problem(tenant_id: str | None) -> str | None:
    """Return None if `tenant_id` is safe to use as a path component and lookup key, else a short reason.

    Safe means 1-64 characters of `[A-Za-z0-9._-]`, not starting with `.` (so never `.` or `..`).
    """
    if tenant_id is None:
        return "missing"
    if not isinstance(tenant_id, str):
        return f"not a string ({type(tenant_id).__name__})"
    if not tenant_id:
        return "empty"
    if len(tenant_id) > MAX_TENANT_ID_LENGTH:
        return f"longer than {MAX_TENANT_ID_LENGTH} characters"
    if not _SAFE_ID.fullmatch(tenant_id):
        return "may only contain letters, digits, '.', '_' and '-'"
    if tenant_id.startswith("."):
        return "must not start with '.'"
    return None


def _normalise_text(value: str) -> str:
    """NFC-normalise and collapse all whitespace runs (incl. YAML folding artefacts) to single spaces."""
    return " ".join(unicodedata.normalize("NFC", value).split())


def _check_safe_id(value: str) -> str:
    problem = tenant_id_problem(value)
    if problem:
        raise ValueError(f"invalid id {value!r}: {problem}")
    return value


def _check_no_duplicates(values: tuple[str, ...]) -> tuple[str, ...]:
    if len(set(values)) != len(values):
        raise ValueError(f"duplicate entries in {list(values)}")
    return values


def _check_category_code(value: str) -> str:
    if not _CATEGORY_CODE.fullmatch(value):
        raise ValueError(f"invalid category code {value!r}: a letter then up to 15 of [A-Za-z0-9_-]")
    return value


def _text_up_to(max_chars: int) -> AfterValidator:
    def check(value: str) -> str:
        if not value:
            raise ValueError("must not be empty")
        if len(value) > max_chars:
            raise ValueError(f"too long ({len(value)} characters, at most {max_chars})")
        return value

    return AfterValidator(check)


Text = Annotated[str, Field(strict=True), AfterValidator(_normalise_text)]
NonEmptyText = Annotated[Text, _text_up_to(600)]
PolicyId = Annotated[str, Field(strict=True), AfterValidator(_check_safe_id)]
CategoryCode = Annotated[str, Field(strict=True), AfterValidator(_check_category_code)]
PositiveInt = Annotated[int, Field(strict=True, gt=0)]


def _check_band(value: tuple[float, float]) -> tuple[float, float]:
    if not 0.0 <= value[0] <= value[1] <= 1.0:
        raise ValueError(f"a band is [low, high] with 0 <= low <= high <= 1, got {list(value)}")
    return value


Band = Annotated[tuple[float, float], AfterValidator(_check_band)]
ModerationApiName = Literal[MODERATION_API_CATEGORIES]  # type: ignore[valid-type]
ModerationApiMap = dict[CategoryCode, tuple[ModerationApiName, ...]]
Units = Annotated[tuple[Unit, ...], Field(min_length=1), AfterValidator(_check_no_duplicates)]


class StrictModel(BaseModel):
    """Base for the policy models: immutable, and unknown fields are an error."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Category(StrictModel):
    """One unsafe-content category: a short code (`U1`), a name, and what is and is not covered."""

    code: CategoryCode
    name: Annotated[Text, _text_up_to(80)]
    description: NonEmptyText
    examples: tuple[Annotated[Text, _text_up_to(200)], ...] = ()


class PolicyDocument(StrictModel):
    """One policy file as written. Settings left out are inherited from `extends` (or take the defaults).

    With `extends`, categories start from the parent's (or from `categories` if given), then
    `disable_categories` removes codes, `replace_categories` swaps entries by code, `add_categories` appends.
    """

    id: PolicyId
    description: NonEmptyText | None = None
    extends: PolicyId | None = None
    categories: tuple[Category, ...] | None = None
    add_categories: tuple[Category, ...] = ()
    replace_categories: tuple[Category, ...] = ()
    disable_categories: tuple[CategoryCode, ...] = ()
    units: Units = DEFAULT_UNITS
    scope: Scope = DEFAULT_SCOPE
    context_budget_tokens: PositiveInt = DEFAULT_CONTEXT_BUDGET_TOKENS
    on_parse_error: FailureVerdict = DEFAULT_FAILURE_VERDICT
    on_truncated: FailureVerdict = DEFAULT_FAILURE_VERDICT
    reasoning_budget_tokens: PositiveInt | None = None
    cascade_band: Band | None = None  # `--verdict-mode cascade`: P(unsafe) band that gets full reasoning
    # code -> OpenAI Moderation category names, for `python -m pipelines.export --format openai-moderation`
    moderation_api_categories: ModerationApiMap | None = None


# Settings a child inherits unless it sets them explicitly (an explicit `null` counts as set).
INHERITED_SETTINGS: tuple[str, ...] = (
    "description",
    "units",
    "scope",
    "context_budget_tokens",
    "on_parse_error",
    "on_truncated",
    "reasoning_budget_tokens",
    "cascade_band",
    "moderation_api_categories",
)


def content_version(content: dict[str, Any]) -> str:
    """First 16 hex chars of sha256 over canonical JSON (sorted keys, no whitespace, UTF-8) of `content`."""
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]


class ResolvedPolicy(StrictModel):
    """A policy after `extends` resolution: everything the job needs to moderate one tenant's traffic.

    `version` is derived from all other fields (see `content_version`); it is computed when omitted and
    checked when given, so a version always identifies exactly one content.
    """

    id: PolicyId
    description: NonEmptyText
    categories: Annotated[tuple[Category, ...], Field(min_length=1)]
    units: Units
    scope: Scope
    context_budget_tokens: PositiveInt
    on_parse_error: FailureVerdict
    on_truncated: FailureVerdict
    reasoning_budget_tokens: PositiveInt | None
    cascade_band: Band | None = None
    moderation_api_categories: ModerationApiMap | None = None  # only codes the policy has (see the registry)
    version: str = ""

    @model_validator(mode="after")
    def _fill_or_check_version(self) -> ResolvedPolicy:
        unknown = set(self.moderation_api_categories or {}) - set(self.category_codes)
        if unknown:
            raise ValueError(f"moderation_api_categories maps codes the policy does not have: {sorted(unknown)}")
        expected = content_version(self.model_dump(mode="json", exclude={"version"}))
        if not self.version:
            object.__setattr__(self, "version", expected)
        elif self.version != expected:
            raise ValueError(f"version {self.version!r} does not match content (expected {expected!r})")
        return self

    @property
    def category_codes(self) -> tuple[str, ...]:
        """The category codes, in prompt order."""
        return tuple(category.code for category in self.categories)

    def with_categories(self, categories: tuple[Category, ...], kind: str) -> ResolvedPolicy:
        """This policy with its categories replaced (a subset, or the same reordered), under an id
        `<kind>-<hash of the codes>` and a fresh content version."""
        digest = hashlib.sha256("\x1f".join(c.code for c in categories).encode()).hexdigest()[:8]
        data = self.model_dump()
        codes = {c.code for c in categories}
        mapping = {k: v for k, v in (self.moderation_api_categories or {}).items() if k in codes}
        data.update(id=f"{kind}-{digest}", categories=categories, moderation_api_categories=mapping or None, version="")
        return ResolvedPolicy.model_validate(data)
