"""The package layout's rules (DESIGN.md, Layout), checked on the imports parsed with `ast`.

- modules form a DAG: no import cycle between modules (imports inside functions count too);
- packages form a DAG: no cycle between `tongues.<package>` nodes, where a package's `commands.py`
  belongs to the CLI layer with `tongues/cli.py` (it registers commands and may reach the runner);
- only the CLI layer imports `tongues.run` or `tongues.cli`: stage code never drives the pipeline;
- `tongues.plan` (pure math) imports nothing from training, inference or later packages;
- no package holds more than 30% of the package's non-test lines.
Each rule is also shown failing on a synthetic graph, so a broken check cannot pass silently.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "tongues"
CLI = "<cli>"
RUNNER = {"tongues.run", "tongues.cli"}
PLAN_MAY_NOT_IMPORT = ("tongues.lm", "tongues.infer", "tongues.instruct", "tongues.distill", "tongues.eval",
                       "tongues.run", "tongues.cli")
MAX_SHARE = 0.30


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    """module -> the tongues modules it imports (anywhere in the file)."""
    files = {module_name(p, root): p for p in root.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                candidates = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            elif isinstance(node, ast.Import):
                candidates = [a.name for a in node.names]
            else:
                continue
            targets.update(c for c in candidates if c in files and c != name)
        graph[name] = targets
    return graph


def package_of(module: str) -> str:
    """`tongues.lm.pretrain` -> `tongues.lm`; top-level modules are their own node; the CLI layer is one node."""
    if module in ("tongues.cli", "tongues.__main__") or module.endswith(".commands"):
        return CLI
    parts = module.split(".")
    return ".".join(parts[:2])


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of `graph` as a list of nodes (first == last), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def package_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    packages: dict[str, set[str]] = {}
    for module, targets in graph.items():
        src = package_of(module)
        packages.setdefault(src, set()).update(package_of(t) for t in targets if package_of(t) != src)
    # `tongues` itself (the lazy public API) is not a layer; the parent package of every module
    packages.pop("tongues", None)
    return {k: v - {"tongues"} for k, v in packages.items()}


def runner_violations(graph: dict[str, set[str]]) -> list[str]:
    return sorted(f"{m} imports {t}" for m, ts in graph.items() for t in ts & RUNNER
                  if package_of(m) != CLI and m not in RUNNER)


def plan_violations(graph: dict[str, set[str]]) -> list[str]:
    return sorted(f"{m} imports {t}" for m, ts in graph.items() if m.startswith("tongues.plan")
                  and package_of(m) != CLI for t in ts if t.startswith(PLAN_MAY_NOT_IMPORT))


def package_shares(root: Path = ROOT) -> dict[str, float]:
    lines: dict[str, int] = {}
    for path in root.rglob("*.py"):
        top = path.relative_to(root).parts
        key = top[0] if len(top) > 1 else "(top-level modules)"
        lines[key] = lines.get(key, 0) + len(path.read_text(encoding="utf-8").splitlines())
    total = sum(lines.values())
    return {k: v / total for k, v in lines.items()}


# -- the real tree ------------------------------------------------------------------------------


def test_no_import_cycle_between_modules():
    assert find_cycle(import_graph()) is None


def test_packages_form_a_dag():
    assert find_cycle(package_graph(import_graph())) is None


def test_only_the_cli_layer_imports_the_runner():
    assert runner_violations(import_graph()) == []


def test_plan_is_pure_math():
    assert plan_violations(import_graph()) == []


def test_no_package_holds_more_than_30_percent_of_the_lines():
    shares = package_shares()
    assert {"plan", "lm", "infer", "data", "tokenizers", "eval"} <= set(shares)
    assert max(shares.values()) <= MAX_SHARE, shares


def test_the_layout_of_design_md():
    for package, module in [("plan", "planner.py"), ("plan", "scaling.py"), ("lm", "pretrain.py"),
                            ("lm", "sweep.py"), ("infer", "generate.py"), ("infer", "serve.py")]:
        assert (ROOT / package / module).exists(), f"{package}/{module}"
    for package in ("data", "tokenizers", "plan", "lm", "infer", "eval"):
        assert (ROOT / package / "commands.py").exists(), f"{package}/commands.py"


# -- each rule catches a deliberate violation --------------------------------------------------


def test_a_module_cycle_is_found():
    graph = {"tongues.lm.a": {"tongues.lm.b"}, "tongues.lm.b": {"tongues.lm.c"}, "tongues.lm.c": {"tongues.lm.a"}}
    assert find_cycle(graph) == ["tongues.lm.a", "tongues.lm.b", "tongues.lm.c", "tongues.lm.a"]
    assert find_cycle({"tongues.lm.a": {"tongues.lm.b"}, "tongues.lm.b": set()}) is None


def test_a_package_cycle_is_found_and_commands_are_the_cli_layer():
    # plan.commands <-> lm.sweep was a measured tangle: both directions between two packages
    graph = {"tongues.plan.planner": {"tongues.lm.sweep"}, "tongues.lm.sweep": {"tongues.plan.scaling"},
             "tongues.plan.scaling": set()}
    assert find_cycle(package_graph(graph)) == ["tongues.lm", "tongues.plan", "tongues.lm"]
    ok = {"tongues.plan.commands": {"tongues.lm.sweep"}, "tongues.lm.sweep": {"tongues.plan.scaling"},
          "tongues.plan.scaling": set()}
    assert find_cycle(package_graph(ok)) is None


def test_a_stage_module_importing_the_runner_is_caught():
    graph = {"tongues.lm.pretrain_commands": {"tongues.run"}, "tongues.lm.commands": {"tongues.run"},
             "tongues.run": {"tongues.config"}}
    assert runner_violations(graph) == ["tongues.lm.pretrain_commands imports tongues.run"]


def test_plan_importing_training_code_is_caught():
    graph = {"tongues.plan.memory": {"tongues.lm.loss", "tongues.plan.shapes"}, "tongues.plan.commands": set()}
    assert plan_violations(graph) == ["tongues.plan.memory imports tongues.lm.loss"]


def test_a_package_over_30_percent_is_caught(tmp_path):
    for name, n in [("big", 40), ("small", 30), ("other", 30)]:
        (tmp_path / name).mkdir()
        (tmp_path / name / "x.py").write_text("x = 1\n" * n)
    shares = package_shares(tmp_path)
    assert shares["big"] == pytest.approx(0.4) and max(shares.values()) > MAX_SHARE


def test_imports_inside_functions_count(tmp_path):
    pkg = tmp_path / "tongues" / "plan"
    pkg.mkdir(parents=True)
    (tmp_path / "tongues" / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "memory.py").write_text("def f():\n    from tongues.lm.loss import install\n")
    (tmp_path / "tongues" / "lm").mkdir()
    (tmp_path / "tongues" / "lm" / "__init__.py").write_text("")
    (tmp_path / "tongues" / "lm" / "loss.py").write_text("install = 1\n")
    graph = import_graph(tmp_path / "tongues")
    assert plan_violations(graph) == ["tongues.plan.memory imports tongues.lm.loss"]
