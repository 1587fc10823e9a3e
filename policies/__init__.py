"""Per-tenant safety policies: validated, versioned data that says what the guard model checks for whom."""

from policies.model import Category, PolicyError, ResolvedPolicy, tenant_id_problem
from policies.registry import (
    DEFAULT_POLICY_DIR,
    DEFAULT_POLICY_ID,
    DEFAULT_TENANTS_FILE,
    PolicyRegistry,
    load_policies,
    load_policy_registry,
)

__all__ = [
    "DEFAULT_POLICY_DIR",
    "DEFAULT_POLICY_ID",
    "DEFAULT_TENANTS_FILE",
    "Category",
    "PolicyError",
    "PolicyRegistry",
    "ResolvedPolicy",
    "load_policies",
    "load_policy_registry",
    "tenant_id_problem",
]
