"""Loading policies and the tenants file, resolving `extends`, and looking up a tenant's policy."""

from __future__ import annotations

import pathlib
from collections.abc import Mapping, Sequence
from typing import Annotated, Any

from pydantic import Field

from policies.loading import iter_policy_files, read_mapping, validate_as
from policies.model import (
    INHERITED_SETTINGS,
    Category,
    PolicyDocument,
    PolicyError,
    PolicyId,
    ResolvedPolicy,
    StrictModel,
    tenant_id_problem,
)

DEFAULT_POLICY_DIR: pathlib.Path = pathlib.Path(__file__).resolve().parent / "definitions"
DEFAULT_TENANTS_FILE: pathlib.Path = DEFAULT_POLICY_DIR / "tenants.yaml"
DEFAULT_POLICY_ID = "rsafe-default"


class TenantsDocument(StrictModel):
    """The tenants file: the policy for tenants not listed, and tenant id -> policy id."""

    default_policy: PolicyId
    tenants: dict[Annotated[str, Field(strict=True)], PolicyId] = Field(default_factory=dict)


class PolicyRegistry:
    """Resolved policies plus the tenant -> policy mapping. Plain data, so it pickles to Beam workers."""

    def __init__(
        self,
        policies: Mapping[str, ResolvedPolicy],
        tenant_policy_ids: Mapping[str, str],
        default_policy_id: str,
        *,
        reject_unknown_tenants: bool = False,
    ) -> None:
        if default_policy_id not in policies:
            raise PolicyError(f"default policy {default_policy_id!r} is not among the loaded policies")
        for tenant_id, policy_id in tenant_policy_ids.items():
            if policy_id not in policies:
                raise PolicyError(f"tenant {tenant_id!r} maps to unknown policy {policy_id!r}")
        self._policies: dict[str, ResolvedPolicy] = dict(policies)
        self._tenant_policy_ids: dict[str, str] = dict(tenant_policy_ids)
        self.default_policy_id: str = default_policy_id
        self.reject_unknown_tenants: bool = reject_unknown_tenants

    def for_tenant(self, tenant_id: str) -> ResolvedPolicy | None:
        """The tenant's policy; for a tenant not in the mapping, the default policy, or None when strict.

        Lookup is by exact id only, so it never yields another tenant's policy. Path safety of the id is a
        separate check (`tenant_id_problem`); unsafe ids are never in the mapping, so they count as unknown.
        """
        policy_id = self._tenant_policy_ids.get(tenant_id)
        if policy_id is None:
            return None if self.reject_unknown_tenants else self._policies[self.default_policy_id]
        return self._policies[policy_id]

    def is_known_tenant(self, tenant_id: str) -> bool:
        """Whether the tenants file lists this tenant."""
        return tenant_id in self._tenant_policy_ids

    def likely_typo_of(self, tenant_id: str) -> str | None:
        """The listed tenant an unknown id differs from only in case or surrounding whitespace (`Acme-Kids`)."""
        if tenant_id in self._tenant_policy_ids:
            return None
        folded = tenant_id.strip().casefold()
        return next((known for known in self._tenant_policy_ids if known.casefold() == folded), None)

    def policy(self, policy_id: str) -> ResolvedPolicy:
        """The resolved policy with this id; KeyError if there is none."""
        try:
            return self._policies[policy_id]
        except KeyError:
            raise KeyError(f"unknown policy {policy_id!r}; known: {sorted(self._policies)}") from None

    def policies(self) -> dict[str, ResolvedPolicy]:
        """All resolved policies by id (a copy)."""
        return dict(self._policies)

    def tenants(self) -> dict[str, str]:
        """Tenant id -> policy id as listed in the tenants file (a copy)."""
        return dict(self._tenant_policy_ids)

    def __repr__(self) -> str:
        return (
            f"PolicyRegistry(policies={sorted(self._policies)}, tenants={len(self._tenant_policy_ids)}, "
            f"default={self.default_policy_id!r}, reject_unknown_tenants={self.reject_unknown_tenants})"
        )


def _check_unique_codes(categories: Sequence[Category], field: str, path: str) -> None:
    """Codes are unique ignoring case: the verdict parser matches listed codes case-insensitively."""
    seen: dict[str, str] = {}
    for index, category in enumerate(categories):
        other = seen.get(category.code.lower())
        if other is not None:
            same = "" if other == category.code else f" (same as {other!r} ignoring case)"
            raise PolicyError(f"{path}: {field}[{index}].code: duplicate category code {category.code!r}{same}")
        seen[category.code.lower()] = category.code


def _resolve_categories(doc: PolicyDocument, parent: ResolvedPolicy | None, path: str) -> list[Category]:
    """Apply `categories`, then disable, replace and add (in that order) to the inherited categories."""
    if doc.categories is not None:
        _check_unique_codes(doc.categories, "categories", path)
    if parent is None:
        for field in ("add_categories", "replace_categories", "disable_categories"):
            if getattr(doc, field):
                raise PolicyError(f"{path}: {field}: only allowed together with extends")
        base = list(doc.categories or ())
        origin = "this policy's categories"
    else:
        base = list(doc.categories) if doc.categories is not None else list(parent.categories)
        origin = "categories" if doc.categories is not None else f"categories inherited from {parent.id!r}"
    base_codes = {category.code for category in base}

    disabled: set[str] = set()
    for index, code in enumerate(doc.disable_categories):
        if code in disabled:
            raise PolicyError(f"{path}: disable_categories[{index}]: {code!r} is listed twice")
        if code not in base_codes:
            raise PolicyError(f"{path}: disable_categories[{index}]: {code!r} is not among the {origin}")
        disabled.add(code)

    _check_unique_codes(doc.replace_categories, "replace_categories", path)
    replacements: dict[str, Category] = {}
    for index, category in enumerate(doc.replace_categories):
        if category.code not in base_codes:
            raise PolicyError(f"{path}: replace_categories[{index}].code: {category.code!r} is not among the {origin}")
        if category.code in disabled:
            raise PolicyError(
                f"{path}: replace_categories[{index}].code: {category.code!r} is also in disable_categories"
            )
        replacements[category.code] = category

    result = [replacements.get(c.code, c) for c in base if c.code not in disabled]
    _check_unique_codes(doc.add_categories, "add_categories", path)
    present = {category.code for category in result}
    for index, category in enumerate(doc.add_categories):
        if category.code in present or category.code in disabled:
            raise PolicyError(
                f"{path}: add_categories[{index}].code: {category.code!r} already exists "
                "(use replace_categories to change it)"
            )
    result.extend(doc.add_categories)
    _check_unique_codes(result, "categories (resolved)", path)
    if not result:
        raise PolicyError(f"{path}: categories: no categories left after resolution")
    return result


def _resolve(
    policy_id: str,
    documents: Mapping[str, tuple[PolicyDocument, str]],
    resolved: dict[str, ResolvedPolicy],
    chain: tuple[str, ...] = (),
) -> ResolvedPolicy:
    if policy_id in resolved:
        return resolved[policy_id]
    doc, path = documents[policy_id]
    parent: ResolvedPolicy | None = None
    if doc.extends is not None:
        path_so_far = (*chain, policy_id)
        if doc.extends in path_so_far:
            cycle = " -> ".join((*path_so_far[path_so_far.index(doc.extends) :], doc.extends))
            raise PolicyError(f"{path}: extends: cycle {cycle}")
        if doc.extends not in documents:
            raise PolicyError(
                f"{path}: extends: unknown policy {doc.extends!r} (known: {', '.join(sorted(documents))})"
            )
        parent = _resolve(doc.extends, documents, resolved, path_so_far)

    settings: dict[str, Any] = {}
    for field in INHERITED_SETTINGS:
        inherit = parent is not None and field not in doc.model_fields_set
        settings[field] = getattr(parent if inherit else doc, field)
    if settings["description"] is None:
        raise PolicyError(f"{path}: description: required field is missing")
    categories = _resolve_categories(doc, parent, path)
    mapping = settings["moderation_api_categories"]
    if mapping is not None and parent is not None and "moderation_api_categories" not in doc.model_fields_set:
        # an inherited mapping follows the categories the child kept as they were (not replaced ones)
        codes = {c.code for c in categories} - {c.code for c in doc.replace_categories}
        settings["moderation_api_categories"] = {code: names for code, names in mapping.items() if code in codes}
    content = {"id": doc.id, "categories": categories, **settings}
    resolved[policy_id] = validate_as(ResolvedPolicy, content, path)
    return resolved[policy_id]


def _read_documents(policy_paths: Sequence[str]) -> dict[str, tuple[PolicyDocument, str]]:
    documents: dict[str, tuple[PolicyDocument, str]] = {}
    for path in iter_policy_files(policy_paths):
        doc = validate_as(PolicyDocument, read_mapping(path), path)
        if doc.id in documents:
            raise PolicyError(f"{path}: id: duplicate policy id {doc.id!r} (also in {documents[doc.id][1]})")
        documents[doc.id] = (doc, path)
    if not documents:
        raise PolicyError(f"{', '.join(map(str, policy_paths))}: no policy files found")
    return documents


def load_policies(
    policy_paths: Sequence[str] = (str(DEFAULT_POLICY_DIR),), parents: Sequence[str] = ()
) -> dict[str, ResolvedPolicy]:
    """Read, validate and resolve every policy under `policy_paths` (files or directories); id -> policy.

    Policies under `parents` can be extended but are not returned; a policy in `policy_paths` with the same id
    takes the place of the parent's (e.g. validating an edited copy of the shipped default).
    """
    documents = _read_documents(policy_paths)
    available = dict(documents)
    if parents:
        for policy_id, entry in _read_documents(parents).items():
            available.setdefault(policy_id, entry)
    resolved: dict[str, ResolvedPolicy] = {}
    for policy_id in documents:
        _resolve(policy_id, available, resolved)
    return {policy_id: resolved[policy_id] for policy_id in documents}


def load_tenants(tenants_file: str, known_policy_ids: Sequence[str]) -> TenantsDocument:
    """Read and validate the tenants file against the loaded policy ids."""
    data = read_mapping(tenants_file)
    tenants = data.get("tenants")
    if isinstance(tenants, dict):
        for key in tenants:
            if not isinstance(key, str):
                raise PolicyError(f"{tenants_file}: tenants: tenant id {key!r} must be a string (quote it)")
            problem = tenant_id_problem(key)
            if problem:
                raise PolicyError(f"{tenants_file}: tenants[{key!r}]: invalid tenant id: {problem}")
    doc = validate_as(TenantsDocument, data, tenants_file)
    known = set(known_policy_ids)
    if doc.default_policy not in known:
        raise PolicyError(f"{tenants_file}: default_policy: unknown policy {doc.default_policy!r}")
    for tenant_id, policy_id in doc.tenants.items():
        if policy_id not in known:
            raise PolicyError(
                f"{tenants_file}: tenants.{tenant_id}: unknown policy {policy_id!r} (known: {', '.join(sorted(known))})"
            )
    return doc


def load_policy_registry(
    policy_paths: Sequence[str] = (str(DEFAULT_POLICY_DIR),),
    tenants_file: str | None = str(DEFAULT_TENANTS_FILE),
    *,
    reject_unknown_tenants: bool = False,
) -> PolicyRegistry:
    """Load and validate all policies and the tenants file into a registry; PolicyError on any bad file.

    Without a tenants file no tenant is listed, and the default policy is `rsafe-default` if loaded, or the
    only policy if exactly one was loaded.
    """
    policies = load_policies(policy_paths)
    if tenants_file is not None:
        tenants = load_tenants(tenants_file, list(policies))
        default_policy_id, tenant_policy_ids = tenants.default_policy, tenants.tenants
    elif DEFAULT_POLICY_ID in policies or len(policies) == 1:
        default_policy_id = DEFAULT_POLICY_ID if DEFAULT_POLICY_ID in policies else next(iter(policies))
        tenant_policy_ids = {}
    else:
        raise PolicyError(
            f"no tenants file and no {DEFAULT_POLICY_ID!r} policy: cannot choose a default among "
            f"{', '.join(sorted(policies))}"
        )
    return PolicyRegistry(policies, tenant_policy_ids, default_policy_id, reject_unknown_tenants=reject_unknown_tenants)
