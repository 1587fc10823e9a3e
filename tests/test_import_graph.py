"""Imports flow downward: no circle among the project's modules, counting module-level and TYPE_CHECKING imports
and, separately, lazy ones inside functions too (a lazy circle is a circle the first call closes); and the
sub-packages of `transforms` import only those below them, lazy imports included."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("pipelines", "transforms", "policies", "training", "benchmarks")
# Bottom to top: a module may import its own layer and those before it, never one after it.
TRANSFORMS_LAYERS = (
    "policies",  # validated policies: value types and their loading, below everything that renders them
    "transforms",  # the package root: Beam's import-time notice, nothing else
    "transforms.records",
    "transforms.stores",
    "transforms.io",
    "transforms.engines",
    "transforms.prompts",
    "transforms.judging",
)
# `pipelines`: the job, then what auditors read, then evaluation; the package root (the command aliases) on top.
PIPELINES_LAYERS = ("pipelines.job", "pipelines.audit", "pipelines.evaluation", "pipelines")


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _module_level_imports(tree: ast.Module, package: str, lazy: bool = False) -> set[str]:
    """Imports outside function bodies (a lazy import inside a function is not an import-time edge); with `lazy`,
    those inside functions too."""
    found: set[str] = set()
    pending: list[ast.AST] = list(tree.body)
    while pending:
        node = pending.pop()
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and not lazy:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import
                parts = package.split(".")
                base = ".".join([*parts[: len(parts) - node.level + 1], base]).strip(".")
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
        pending.extend(ast.iter_child_nodes(node))
    return found


def import_graph(lazy: bool = False) -> dict[str, set[str]]:
    """Project module → the project modules it imports at import time (with `lazy`, or at any time)."""
    modules = {_module_name(path): path for package in PACKAGES for path in (ROOT / package).rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        imports = _module_level_imports(ast.parse(path.read_text()), package, lazy)
        graph[name] = {m for m in imports if m in modules and m != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle, as the list of modules around it, or None."""
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_find_cycle_sees_a_circle_and_a_clean_graph():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_the_graph_sees_type_checking_imports():
    graph = import_graph()
    assert "pipelines.job.plan" in graph["pipelines.job.manifest"]
    assert "transforms.judging.run_context" in graph["transforms.judging.verdict_cache"]


def test_no_import_circle_among_project_modules():
    assert find_cycle(import_graph()) is None


def test_no_import_circle_counting_lazy_imports():
    lazy = import_graph(lazy=True)
    assert (
        "transforms.engines.served_head" in lazy["transforms.engines.embedded_model"]
    )  # a function-level import is seen
    assert "transforms.engines.served_head" not in import_graph()["transforms.engines.embedded_model"]
    assert find_cycle(lazy) is None


def test_transforms_and_policies_never_import_the_layers_above_them():
    """`pipelines` and `training` sit on top of `transforms` and `policies`: no edge runs back up, lazy ones included
    (the embedded-model builder that `transforms.engines.vllm_engine` calls lives in `transforms`, not `pipelines`)."""
    above = ("pipelines", "training", "benchmarks")
    upward = sorted(
        f"{module} -> {target}"
        for module, targets in import_graph(lazy=True).items()
        if module.split(".")[0] in ("transforms", "policies")
        for target in targets
        if target.split(".")[0] in above
    )
    assert upward == []


def layer_of(module: str, layers: tuple[str, ...]) -> str | None:
    """The most specific layer `module` belongs to (the longest layer name it is or sits under), or None."""
    owners = [layer for layer in layers if module == layer or module.startswith(layer + ".")]
    return max(owners, key=len) if owners else None


def upward_edges(graph: dict[str, set[str]], layers: tuple[str, ...]) -> list[str]:
    """`module -> target` for every import from a layer to one after it in `layers` (modules outside them ignored)."""
    rank = {layer: index for index, layer in enumerate(layers)}
    edges = []
    for module, targets in graph.items():
        if (own := layer_of(module, layers)) is None:
            continue
        for target in targets:
            if (other := layer_of(target, layers)) is not None and rank[other] > rank[own]:
                edges.append(f"{module} -> {target}")
    return sorted(edges)


def test_upward_edges_sees_an_import_from_below():
    layers = ("low", "low.a", "low.b")
    assert upward_edges({"low.a.x": {"low.b.y"}, "low.b.y": {"low.a.x", "low.records"}}, layers) == [
        "low.a.x -> low.b.y"
    ]
    assert layer_of("low.records", layers) == "low" and layer_of("other.x", layers) is None


def test_every_transforms_module_sits_in_a_layer():
    modules = [m for m in import_graph() if m.startswith("transforms")]
    assert len(modules) > 40
    assert [m for m in modules if layer_of(m, TRANSFORMS_LAYERS) == "transforms" and m != "transforms"] == []


def test_transforms_sub_packages_import_only_those_below_them():
    """records < stores < io < engines < prompts < judging lazy imports count."""
    assert upward_edges(import_graph(lazy=True), TRANSFORMS_LAYERS) == []


def test_pipelines_sub_packages_import_only_those_below_them():
    """job < audit < evaluation < the command aliases at the package root: lazy imports count."""
    graph = import_graph(lazy=True)
    assert "pipelines.job.moderate" in graph["pipelines.evaluation.evaluate"]  # the graph sees the sub-packages
    assert upward_edges(graph, PIPELINES_LAYERS) == []


def test_the_commands_at_the_pipelines_root_are_aliases_of_their_sub_package_modules():
    """`python -m pipelines.report` and the others: each root module imports one `main`, from a module in a
    sub-package (of the same name, but `nightly` runs `job.quiet_run`), and runs it; nothing imports them."""
    graph = import_graph(lazy=True)
    commands = [f"pipelines.{path.stem}" for path in (ROOT / "pipelines").glob("*.py") if path.stem != "__init__"]
    assert len(commands) >= 10
    for command in commands:
        (target,) = {t for t in graph[command] if t.startswith("pipelines.")} - {"pipelines"}
        expected = "quiet_run" if command == "pipelines.nightly" else command.rpartition(".")[2]
        assert target.rpartition(".")[2] == expected, (command, target)
        assert len((ROOT / f"{command.replace('.', '/')}.py").read_text().splitlines()) <= 12, command
    assert [m for m, targets in graph.items() if set(commands) & targets] == []
