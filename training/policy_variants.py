"""Which policy a training example is shown under, and the label it then has.

RSafe's "adaptive" claim is that the guard reads the policy it is given. Examples are shown under the shipped
default (categories in their order or shuffled), random category subsets, or a shipped tenant policy, and the label
follows the policy: an unsafe example whose set names its category (mapped here onto the default codes it touches)
is safe under a policy that has none of those codes. Unsafe examples without a usable category are shown only
with the full default category set (any order), since which category they violate is unknown; safe examples stay
safe under any policy that only removes or narrows categories (never under one that adds categories).
"""

from __future__ import annotations

import dataclasses
import random

from policies import DEFAULT_POLICY_ID, ResolvedPolicy

# A set's category → the default codes an example of it may violate (first = the main one). None: no mapping
# (too broad or not in the taxonomy), so the example is only shown with every default category.
CATEGORY_CODES: dict[str, tuple[str, ...] | None] = {
    # Aegis 2.0
    "Harassment": ("U8", "U7"),
    "Criminal Planning/Confessions": ("U3", "U1", "U2"),
    "Guns and Illegal Weapons": ("U2", "U1"),
    "Hate/Identity Hate": ("U7", "U8"),
    "Political/Misinformation/Conspiracy": ("U12",),
    "Suicide and Self Harm": ("U9",),
    "Threat": ("U1", "U8"),
    "Malware": ("U3", "U2"),
    "Violence": ("U1", "U2"),
    "Sexual (minor)": ("U6", "U5", "U15"),
    "Profanity": ("U8",),
    "Sexual": ("U5", "U6"),
    "Fraud/Deception": ("U3", "U12"),
    "Controlled/Regulated Substances": ("U4",),
    "PII/Privacy": ("U10",),
    "Copyright/Trademark/Plagiarism": ("U11",),
    "Unauthorized Advice": ("U13",),
    "Manipulation": ("U17", "U12"),
    "High Risk Gov Decision Making": None,
    "Other": None,
    "Immoral/Unethical": None,
    "Illegal Activity": None,
    # JailbreakV-28K
    "Animal Abuse": ("U14",),
    "Bias": ("U7",),
    "Economic Harm": ("U3",),
    "Fraud": ("U3", "U12"),
    "Hate Speech": ("U7", "U8"),
    "Health Consultation": ("U13",),
    "Physical Harm": ("U1", "U2", "U9"),
    "Privacy Violation": ("U10",),
    "Tailored Unlicensed Advice": ("U13",),
    "Government Decision": None,
    "Political Sensitivity": None,
    "Unethical Behavior": None,
    # DiaSafety (unsafety of a reply in context)
    "Offending User": ("U8",),
    "Biased Opinion": ("U7",),
    "Risk Ignorance": ("U9", "U1"),
    "Unauthorized Expertise": ("U13",),
    "Toxicity Agreement": None,
}

# Tenant policies: the codes each one replaces (narrowed or broadened), and whether it adds categories.
_TENANT_POLICIES = ("kids-learning", "medical-advice", "security-research")


@dataclasses.dataclass(frozen=True)
class PolicyPool:
    """A fixed set of derived policies to draw from instead of fresh random ones (`policy_pool`).

    Examples that share a policy share their prompt's first ~300-900 tokens, which a prefix-cached engine computes
    once per policy: the decision head's feature extraction draws from a pool so that most prefixes are cached.
    """

    shuffled: tuple[ResolvedPolicy, ...]
    subsets: tuple[ResolvedPolicy, ...]


def policy_pool(rng: random.Random, default: ResolvedPolicy, shuffled: int, subsets: int) -> PolicyPool:
    """`shuffled` reorderings of the default's categories and `subsets` random subsets of 2-8 of them; each code
    is in about the same number of subsets (a subset starts from the codes used least so far)."""
    orders = tuple(
        derived_policy(default, tuple(rng.sample(default.categories, len(default.categories))), "shuffled")
        for _ in range(shuffled)
    )
    uses = {c.code: 0 for c in default.categories}
    drawn = []
    for _ in range(subsets):
        size = rng.randint(2, 8)
        least = sorted(default.categories, key=lambda c: (uses[c.code], rng.random()))
        chosen = [least[0], *rng.sample(least[1:], size - 1)]
        for category in chosen:
            uses[category.code] += 1
        drawn.append(derived_policy(default, tuple(rng.sample(chosen, len(chosen))), "subset"))
    return PolicyPool(orders, tuple(drawn))


@dataclasses.dataclass(frozen=True)
class PolicyChoice:
    """A policy to show an example under, how it was made, and the example's label under it."""

    policy: ResolvedPolicy
    kind: str  # default | shuffled | subset | tenant
    label: str


def codes_for(category: str | None) -> tuple[str, ...] | None:
    """The default codes a set's category maps to, or None when it has no mapping."""
    return CATEGORY_CODES.get(category) if category else None


def label_under(policy: ResolvedPolicy, gold: str, codes: tuple[str, ...] | None) -> str | None:
    """The example's label under `policy`, or None when it cannot be known (so the example is not shown)."""
    if gold == "safe":
        return "safe"
    if codes is None:
        return None
    return "unsafe" if set(codes) & set(policy.category_codes) else "safe"


def derived_policy(base: ResolvedPolicy, categories: tuple, kind: str) -> ResolvedPolicy:
    """`base` with its categories replaced (a subset, or the same ones reordered), id `train-<kind>-<hash>`."""
    return base.with_categories(categories, f"train-{kind}")


def _changed_codes(tenant: ResolvedPolicy, default: ResolvedPolicy) -> set[str]:
    base = {c.code: c for c in default.categories}
    return {c.code for c in tenant.categories if c.code not in base or base[c.code] != c}


def choose_policy(
    rng: random.Random,
    policies: dict[str, ResolvedPolicy],
    level: str,
    gold: str,
    codes: tuple[str, ...] | None,
    shares: dict[str, float],
    pool: PolicyPool | None = None,
) -> PolicyChoice:
    """Draw a policy for one example (`shares`: kind → weight) among those under which its label is known;
    shuffled and subset policies come from `pool` when one is given."""
    default = policies[DEFAULT_POLICY_ID]
    kinds = list(shares)
    for _ in range(8):
        kind = rng.choices(kinds, weights=[shares[k] for k in kinds])[0]
        choice = _draw(rng, kind, policies, default, level, gold, codes, pool)
        if choice is not None:
            return choice
    categories = tuple(rng.sample(default.categories, len(default.categories)))
    return PolicyChoice(derived_policy(default, categories, "shuffled"), "shuffled", gold)


def _draw(
    rng: random.Random,
    kind: str,
    policies: dict[str, ResolvedPolicy],
    default: ResolvedPolicy,
    level: str,
    gold: str,
    codes: tuple[str, ...] | None,
    pool: PolicyPool | None = None,
) -> PolicyChoice | None:
    if kind == "default":
        return PolicyChoice(default, "default", gold)
    if pool is not None and kind in ("shuffled", "subset"):
        return _draw_from_pool(rng, kind, pool, gold, codes)
    if kind == "shuffled":
        categories = tuple(rng.sample(default.categories, len(default.categories)))
        return PolicyChoice(derived_policy(default, categories, "shuffled"), "shuffled", gold)
    if kind == "subset":
        if gold == "unsafe" and codes is None:
            return None
        size = rng.randint(2, 8)
        if gold == "unsafe" and rng.random() < 0.5:  # the example's own category is in the subset
            keep = [c for c in default.categories if c.code == codes[0]]
            others = [c for c in default.categories if c.code != codes[0]]
            chosen = keep + rng.sample(others, size - 1)
        else:
            chosen = rng.sample(default.categories, size)
        chosen = rng.sample(chosen, len(chosen))
        policy = derived_policy(default, tuple(chosen), "subset")
        return PolicyChoice(policy, "subset", label_under(policy, gold, codes))
    if kind == "tenant":
        name = rng.choice(_TENANT_POLICIES)
        tenant = policies[name]
        if level not in tenant.units:
            return None
        changed = _changed_codes(tenant, default)
        adds = any(c.code not in default.category_codes for c in tenant.categories)
        if gold == "safe" and (adds or name == "kids-learning"):
            return None  # a broadened policy may make a safe example unsafe
        if gold == "unsafe" and (codes is None or set(codes) & changed):
            return None
        return PolicyChoice(tenant, "tenant", gold)
    raise ValueError(f"unknown policy kind {kind!r}")


def _draw_from_pool(
    rng: random.Random, kind: str, pool: PolicyPool, gold: str, codes: tuple[str, ...] | None
) -> PolicyChoice | None:
    """A shuffled or subset policy from the pool; for an unsafe example, half the time a subset holding its
    main code (as `_draw` does with fresh subsets)."""
    if kind == "shuffled":
        return PolicyChoice(rng.choice(pool.shuffled), "shuffled", gold) if pool.shuffled else None
    if (gold == "unsafe" and codes is None) or not pool.subsets:
        return None
    candidates = pool.subsets
    if gold == "unsafe" and rng.random() < 0.5:
        candidates = tuple(p for p in pool.subsets if codes[0] in p.category_codes) or candidates
    policy = rng.choice(candidates)
    return PolicyChoice(policy, "subset", label_under(policy, gold, codes))


def label_in_pack(choice: PolicyChoice, policies: dict[str, ResolvedPolicy], gold: str, codes) -> str | None:
    """An example's label under a policy drawn for a whole pack (as for a safe example), None when unknown.

    The pack's policy was drawn by `choose_policy(..., gold="safe", codes=None)`, so it never broadens the
    default: safe examples stay safe, and an unsafe one keeps its label where the policy still covers its codes.
    """
    if gold == "safe":
        return "safe"
    if choice.kind in ("default", "shuffled"):
        return gold
    if choice.kind == "subset":
        return label_under(choice.policy, gold, codes)
    if choice.kind == "tenant":
        changed = _changed_codes(choice.policy, policies[DEFAULT_POLICY_ID])
        return None if codes is None or set(codes) & changed else gold
    raise ValueError(f"unknown policy kind {choice.kind!r}")
