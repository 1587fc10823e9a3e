"""Tests for per-tenant safety policies: validation, extends resolution, versions, tenants, CLI."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from policies import (
    DEFAULT_POLICY_DIR,
    DEFAULT_TENANTS_FILE,
    Category,
    PolicyError,
    PolicyRegistry,
    ResolvedPolicy,
    load_policies,
    load_policy_registry,
    tenant_id_problem,
)

REPO_ROOT = Path(__file__).resolve().parents[1]

BASE_POLICY = """\
id: base
description: A small base policy.
categories:
  - {code: A1, name: Alpha, description: Alpha harms.}
  - {code: A2, name: Beta, description: Beta harms.}
  - {code: A3, name: Gamma, description: Gamma harms.}
"""


def write(directory: Path, name: str, text: str) -> Path:
    """Write a dedented policy/tenants file and return its path."""
    path = directory / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def policy_with(tmp_path: Path, child: str) -> dict[str, ResolvedPolicy]:
    """Load the base policy plus one child policy written from `child`."""
    write(tmp_path, "base.yaml", BASE_POLICY)
    write(tmp_path, "child.yaml", child)
    return load_policies([str(tmp_path)])


def assert_policy_error(tmp_path: Path, child: str, file_name: str, *fragments: str) -> None:
    """Loading must fail with a message naming the file and containing every fragment."""
    with pytest.raises(PolicyError) as caught:
        policy_with(tmp_path, child)
    message = str(caught.value)
    assert file_name in message, message
    for fragment in fragments:
        assert fragment in message, message


# --- validation errors: one test per kind --------------------------------------------------------


def test_duplicate_category_code_names_field_and_file(tmp_path: Path) -> None:
    child = """\
    id: child
    description: d
    categories:
      - {code: B1, name: n, description: d}
      - {code: B2, name: n, description: d}
      - {code: B3, name: n, description: d}
      - {code: B1, name: n, description: d}
    """
    assert_policy_error(tmp_path, child, "child.yaml", "categories[3].code", "duplicate", "B1")


def test_category_codes_are_unique_ignoring_case(tmp_path: Path) -> None:
    own = """\
    id: child
    description: d
    categories:
      - {code: U1, name: n, description: d}
      - {code: u1, name: n, description: d}
    """
    assert_policy_error(tmp_path, own, "child.yaml", "categories[1].code", "'u1'", "same as 'U1' ignoring case")
    added = """\
    id: child
    extends: base
    add_categories:
      - {code: a1, name: n, description: d}
    """
    assert_policy_error(tmp_path, added, "child.yaml", "'a1'", "same as 'A1' ignoring case")


def test_empty_category_list_after_resolution(tmp_path: Path) -> None:
    child = """\
    id: child
    extends: base
    disable_categories: [A1, A2, A3]
    """
    assert_policy_error(tmp_path, child, "child.yaml", "categories", "no categories left")


def test_empty_category_list_without_extends(tmp_path: Path) -> None:
    assert_policy_error(tmp_path, "id: child\ndescription: d\ncategories: []\n", "child.yaml", "categories")


def test_unknown_extends(tmp_path: Path) -> None:
    assert_policy_error(tmp_path, "id: child\nextends: nope\n", "child.yaml", "extends", "unknown policy 'nope'")


def test_extends_cycle(tmp_path: Path) -> None:
    write(tmp_path, "x.yaml", "id: x\nextends: y\n")
    write(tmp_path, "y.yaml", "id: y\nextends: x\n")
    with pytest.raises(PolicyError, match=r"\.yaml: extends: cycle (x -> y -> x|y -> x -> y)"):
        load_policies([str(tmp_path)])


def test_extends_self_is_a_cycle(tmp_path: Path) -> None:
    assert_policy_error(tmp_path, "id: child\nextends: child\n", "child.yaml", "extends: cycle child -> child")


def test_unknown_top_level_field(tmp_path: Path) -> None:
    assert_policy_error(tmp_path, "id: child\nextends: base\ncolour: red\n", "child.yaml", "colour: unknown field")


def test_unknown_category_field(tmp_path: Path) -> None:
    child = """\
    id: child
    extends: base
    add_categories:
      - {code: C1, name: n, description: d, severity: high}
    """
    assert_policy_error(tmp_path, child, "child.yaml", "add_categories[0].severity: unknown field")


def test_bad_setting_values(tmp_path: Path) -> None:
    child = """\
    id: child
    extends: base
    scope: whole_conversation
    context_budget_tokens: "2048"
    units: []
    """
    assert_policy_error(tmp_path, child, "child.yaml", "scope:", "context_budget_tokens:", "units:")


def test_duplicate_yaml_key(tmp_path: Path) -> None:
    child = "id: child\nextends: base\ndescription: one\ndescription: two\n"
    assert_policy_error(tmp_path, child, "child.yaml", "duplicate key 'description'")


def test_duplicate_policy_id_across_files(tmp_path: Path) -> None:
    assert_policy_error(tmp_path, BASE_POLICY, "child.yaml", "id: duplicate policy id 'base'", "base.yaml")


def test_replace_of_missing_code(tmp_path: Path) -> None:
    child = """\
    id: child
    extends: base
    replace_categories:
      - {code: Z9, name: n, description: d}
    """
    assert_policy_error(tmp_path, child, "child.yaml", "replace_categories[0].code", "'Z9'")


def test_disable_of_missing_code(tmp_path: Path) -> None:
    child = "id: child\nextends: base\ndisable_categories: [A1, Z9]\n"
    assert_policy_error(tmp_path, child, "child.yaml", "disable_categories[1]", "'Z9'")


def test_add_of_existing_code(tmp_path: Path) -> None:
    child = """\
    id: child
    extends: base
    add_categories:
      - {code: A2, name: n, description: d}
    """
    assert_policy_error(tmp_path, child, "child.yaml", "add_categories[0].code", "'A2' already exists")


def test_tenant_mapping_to_unknown_policy(tmp_path: Path) -> None:
    write(tmp_path, "base.yaml", BASE_POLICY)
    tenants = write(tmp_path, "tenants.yaml", "default_policy: base\ntenants: {acme: missing}\n")
    with pytest.raises(PolicyError, match=r"tenants\.yaml: tenants\.acme: unknown policy 'missing'"):
        load_policy_registry([str(tmp_path)], str(tenants))


def test_tenants_default_policy_unknown(tmp_path: Path) -> None:
    write(tmp_path, "base.yaml", BASE_POLICY)
    tenants = write(tmp_path, "tenants.yaml", "default_policy: nope\n")
    with pytest.raises(PolicyError, match=r"tenants\.yaml: default_policy: unknown policy 'nope'"):
        load_policy_registry([str(tmp_path)], str(tenants))


def test_tenants_file_unknown_field_and_unsafe_tenant_id(tmp_path: Path) -> None:
    write(tmp_path, "base.yaml", BASE_POLICY)
    extra = write(tmp_path, "tenants.yaml", "default_policy: base\nfallback: base\n")
    with pytest.raises(PolicyError, match=r"tenants\.yaml: fallback: unknown field"):
        load_policy_registry([str(tmp_path)], str(extra))
    unsafe = write(tmp_path, "tenants.json", json.dumps({"default_policy": "base", "tenants": {"../x": "base"}}))
    with pytest.raises(PolicyError, match=r"tenants\.json: tenants\['\.\./x'\]: invalid tenant id"):
        load_policy_registry([str(tmp_path)], str(unsafe))


def test_policy_error_is_a_value_error() -> None:
    assert issubclass(PolicyError, ValueError)


def test_category_patches_require_extends(tmp_path: Path) -> None:
    child = BASE_POLICY.replace("id: base", "id: child") + "disable_categories: [A1]\n"
    assert_policy_error(tmp_path, child, "child.yaml", "disable_categories: only allowed together with extends")


def test_single_path_string_and_repeated_file_are_accepted() -> None:
    assert load_policies(str(DEFAULT_POLICY_DIR)) == load_policies(
        [str(DEFAULT_POLICY_DIR), str(DEFAULT_POLICY_DIR / "default.yaml")]
    )


# --- extends resolution ----------------------------------------------------------------------


def test_extends_add_replace_disable_and_setting_inheritance(tmp_path: Path) -> None:
    write(tmp_path, "base.yaml", BASE_POLICY + "scope: every_turn\nreasoning_budget_tokens: 512\n")
    write(
        tmp_path,
        "child.yaml",
        """\
        id: child
        extends: base
        on_parse_error: unsafe
        reasoning_budget_tokens: null
        disable_categories: [A1]
        replace_categories:
          - {code: A3, name: Gamma prime, description: Narrower gamma., examples: [an example]}
        add_categories:
          - {code: C1, name: Extra, description: Extra harms.}
        """,
    )
    write(tmp_path, "grandchild.json", json.dumps({"id": "grandchild", "extends": "child", "units": ["prompt"]}))
    policies = load_policies([str(tmp_path)])
    child, grandchild = policies["child"], policies["grandchild"]
    assert child.category_codes == ("A2", "A3", "C1")
    assert child.categories[1] == Category(
        code="A3", name="Gamma prime", description="Narrower gamma.", examples=("an example",)
    )
    assert child.description == "A small base policy."  # inherited
    assert child.scope == "every_turn"  # inherited
    assert child.reasoning_budget_tokens is None  # explicit null overrides the parent's 512
    assert child.on_parse_error == "unsafe" and child.on_truncated == "flag"
    assert grandchild.categories == child.categories
    assert grandchild.units == ("prompt",) and grandchild.on_parse_error == "unsafe"
    assert policies["base"].units == ("prompt", "response") and policies["base"].context_budget_tokens == 1024


# --- versions ---------------------------------------------------------------------------------


def test_version_is_stable_across_key_order_and_whitespace(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    write(tmp_path / "a", "p.yaml", BASE_POLICY)
    write(
        tmp_path / "b",
        "p.yaml",
        """\
        categories:
          - name: Alpha
            code: A1
            description: >
              Alpha
                 harms.
          - {description: "Beta harms.",   code: A2, name: Beta}
          - {name: Gamma, code: A3, description: Gamma harms.   }
        description: |
          A small base policy.
        id: base
        """,
    )
    first = load_policies([str(tmp_path / "a")])["base"]
    second = load_policies([str(tmp_path / "b" / "p.yaml")])["base"]
    assert first == second
    assert len(first.version) == 16 and int(first.version, 16) >= 0
    assert first.version == load_policies([str(tmp_path / "a")])["base"].version


def test_version_changes_with_wording_and_settings(tmp_path: Path) -> None:
    original = policy_with(tmp_path, "id: child\nextends: base\n")["child"]
    reworded = policy_with(tmp_path, "id: child\nextends: base\ndescription: Another wording.\n")["child"]
    budget = policy_with(tmp_path, "id: child\nextends: base\ncontext_budget_tokens: 2048\n")["child"]
    assert len({original.version, reworded.version, budget.version}) == 3


def test_version_is_checked_when_given() -> None:
    policy = load_policies()["rsafe-default"]
    assert ResolvedPolicy(**policy.model_dump()) == policy
    with pytest.raises(ValueError, match="does not match content"):
        ResolvedPolicy(**{**policy.model_dump(), "version": "0" * 16})


# --- tenants ----------------------------------------------------------------------------------


def test_unknown_tenant_gets_default_or_none_when_strict() -> None:
    lenient = load_policy_registry()
    strict = load_policy_registry(reject_unknown_tenants=True)
    assert lenient.for_tenant("acme-kids").id == "kids-learning"
    assert strict.for_tenant("medcare").id == "medical-advice"
    assert lenient.for_tenant("initech").id == "rsafe-default"
    assert lenient.for_tenant("ACME-KIDS").id == "rsafe-default"  # exact match only
    assert strict.for_tenant("initech") is None
    assert strict.for_tenant("../acme-kids") is None


def test_registry_without_tenants_file_uses_rsafe_default() -> None:
    registry = load_policy_registry(tenants_file=None)
    assert registry.default_policy_id == "rsafe-default"
    assert registry.for_tenant("acme-kids").id == "rsafe-default"


@pytest.mark.parametrize("tenant_id", ["../x", "a/b", "", "a\x00b", "\x00", "x" * 65, ".hidden", "..", None, "a b"])
def test_unsafe_tenant_ids_are_rejected(tenant_id: str | None) -> None:
    assert tenant_id_problem(tenant_id)


@pytest.mark.parametrize("tenant_id", ["acme-kids", "a", "Tenant_01.prod", "x" * 64, "a..b", "123"])
def test_safe_tenant_ids_are_accepted(tenant_id: str) -> None:
    assert tenant_id_problem(tenant_id) is None


def test_registry_pickles() -> None:
    registry = load_policy_registry(reject_unknown_tenants=True)
    restored = pickle.loads(pickle.dumps(registry))
    assert isinstance(restored, PolicyRegistry)
    assert restored.policies() == registry.policies()
    assert restored.tenants() == registry.tenants()
    assert restored.for_tenant("unknown") is None
    assert restored.for_tenant("redteam-labs") == registry.for_tenant("redteam-labs")


# --- shipped definitions ----------------------------------------------------------------------


def test_shipped_policies_validate_and_differ() -> None:
    registry = load_policy_registry([str(DEFAULT_POLICY_DIR)], str(DEFAULT_TENANTS_FILE))
    policies = registry.policies()
    assert set(policies) >= {"rsafe-default", "kids-learning", "medical-advice", "security-research"}
    assert len({policy.version for policy in policies.values()}) == len(policies)
    default = policies["rsafe-default"]
    assert default.category_codes == tuple(f"U{i}" for i in range(1, 19))
    assert default.categories[16].name == "Manipulation & Coercion / Human Trafficking"
    assert registry.tenants() == {
        "acme-kids": "kids-learning",
        "medcare": "medical-advice",
        "redteam-labs": "security-research",
        "globex": "rsafe-default",
    }
    for policy in policies.values():
        if policy.id != "rsafe-default":
            assert policy.categories != default.categories


# --- CLI --------------------------------------------------------------------------------------


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """Run `python -m policies` from the repo root with the test's interpreter."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
    }
    return subprocess.run(
        [sys.executable, "-m", "policies", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_cli_validate_ok_prints_ids_and_versions() -> None:
    result = run_cli("validate", str(DEFAULT_POLICY_DIR), "--tenants", str(DEFAULT_TENANTS_FILE))
    assert result.returncode == 0, result.stderr
    version = load_policies()["kids-learning"].version
    assert f"kids-learning\t{version}" in result.stdout


def test_cli_validate_bad_file_exits_1_with_message(tmp_path: Path) -> None:
    write(tmp_path, "base.yaml", BASE_POLICY)
    write(tmp_path, "child.yaml", "id: child\nextends: base\nunits: [prompt, reply]\n")
    result = run_cli("validate", str(tmp_path))
    assert result.returncode == 1
    assert "child.yaml" in result.stderr and "units[1]" in result.stderr


def test_cli_validate_one_file_extending_the_shipped_default(tmp_path: Path) -> None:
    tenant = write(tmp_path, "tenant.yaml", "id: my-tenant\nextends: rsafe-default\ndisable_categories: [U11]\n")
    result = run_cli("validate", str(tenant))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("my-tenant\t") and "17 categories" in result.stdout
    assert "rsafe-default" not in result.stdout  # parents are resolved against, not reported
    standalone = run_cli("validate", str(tenant), "--standalone")
    assert standalone.returncode == 1 and "unknown policy 'rsafe-default'" in standalone.stderr
    edited = (DEFAULT_POLICY_DIR / "default.yaml").read_text().replace("U18", "U19")
    both = [write(tmp_path, "default.yaml", edited), tenant]
    policies = load_policies([str(p) for p in both], parents=[str(DEFAULT_POLICY_DIR)])
    assert sorted(policies) == ["my-tenant", "rsafe-default"] and "U19" in policies["my-tenant"].category_codes


def test_cli_help() -> None:
    result = run_cli("validate", "--help")
    assert result.returncode == 0 and "usage:" in result.stdout
    top = run_cli("--help")
    assert "python -m pipelines.render_prompt" in top.stdout  # where the prompt rendering went


def test_render_is_not_a_policies_command() -> None:
    """Rendering needs the job's renderer and the model's tokenizer: `policies` imports nothing above it."""
    result = run_cli("render", "--tenant", "acme-kids", "--conversation", "conv.json")
    assert result.returncode == 2 and "invalid choice: 'render'" in result.stderr
