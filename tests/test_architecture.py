"""The direction of the imports inside xdisc (docs: STYLE "Direction of dependencies"), read with ast from the
source: every ``import`` counts, also those inside functions (a lazy import hides a cycle, it does not remove it)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "workflow" / "src"
STAGES = ("xdisc.data", "xdisc.synth", "xdisc.stack", "xdisc.cnn", "xdisc.report", "xdisc.label_app",
          "xdisc.evaluate", "xdisc.detectability", "xdisc.labels", "xdisc.cli")
ABOVE_STAGES = ("xdisc.evaluate", "xdisc.detectability")  # run both methods: above cnn/ and stack/
HEAVY = ("snakemake", "lightning", "torch", "matplotlib")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted((SRC / "xdisc").rglob("*.py"))}


def _imports(name: str) -> set[str]:
    """Modules ``name`` imports (xdisc modules resolved to the module, others to their top-level package)."""
    tree = ast.parse(MODULES[name].read_text(encoding="utf-8"))
    package = name if MODULES[name].name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            # "from xdisc.cnn import datasets" imports the module xdisc.cnn.datasets
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        else:
            continue
        for target in targets:
            if target.split(".")[0] != "xdisc":
                out.add(target.split(".")[0])
                continue
            while target not in MODULES:  # "import xdisc.config.x" -> the longest known module
                target = target.rpartition(".")[0]
            if target != name:
                out.add(target)
    return out


GRAPH = {name: {m for m in _imports(name) if m in MODULES} for name in MODULES}


def _within(module: str, packages) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def test_the_package_is_split_by_stage():
    for package in ("xdisc.core", "xdisc.data", "xdisc.synth", "xdisc.stack", "xdisc.cnn", "xdisc.report",
                    "xdisc.label_app"):
        assert package in MODULES, package
    top = {m for m in MODULES if m.count(".") == 1 and MODULES[m].name != "__init__.py"}
    assert top == {"xdisc.__main__", "xdisc.cli", "xdisc.config", "xdisc.evaluate", "xdisc.detectability",
                   "xdisc.labels"}


def test_no_import_cycles():
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(GRAPH[node]):
            if state.get(nxt) == 1:
                cycles.append([*path[path.index(nxt):], nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for start in sorted(GRAPH):
        if start not in state:
            visit(start, [start])
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_the_checker_sees_lazy_imports_and_cycles(monkeypatch):
    """The graph is not vacuous: a known lazy import is in it, and a cycle would be found."""
    assert "xdisc.label_app" in GRAPH["xdisc.cli"]  # imported at the top
    assert "xdisc.cnn.train" in GRAPH["xdisc.cli"]  # imported inside run_train
    assert "xdisc.data.events" in GRAPH["xdisc.data.receiver_functions"]
    monkeypatch.setitem(GRAPH, "xdisc.core.moveout", GRAPH["xdisc.core.moveout"] | {"xdisc.stack.stacking"})
    with pytest.raises(AssertionError, match="import cycles"):
        test_no_import_cycles()


@pytest.mark.parametrize("name", sorted(m for m in MODULES if _within(m, ("xdisc.core",))))
def test_core_imports_no_stage_and_no_heavy_framework(name):
    imported = _imports(name)
    assert not [m for m in imported if _within(m, STAGES)], f"{name} imports a stage: {sorted(imported)}"
    assert not imported & set(HEAVY), f"{name} imports {sorted(imported & set(HEAVY))}"


def test_cnn_reads_labels_never_the_web_app_or_the_downloader():
    for name in (m for m in MODULES if _within(m, ("xdisc.cnn",))):
        bad = [m for m in GRAPH[name] if _within(m, ("xdisc.label_app", "xdisc.data.download"))]
        assert not bad, f"{name} imports {bad}"
    assert "xdisc.labels" in GRAPH["xdisc.cnn.datasets"]


def test_the_calibration_draws_run_without_torch():
    """``xdisc calibration-draws`` runs per batch of stations: importing torch and lightning would cost each
    batch 6-10 s of a 2-core machine. Everything it imports, transitively, leaves them out."""
    seen, todo = set(), ["xdisc.cnn.redecon"]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo += sorted(GRAPH[name])
    assert {"xdisc.cnn.calibration", "xdisc.cnn.synthetic_set", "xdisc.cnn.images"} <= seen
    heavy = {name: sorted(_imports(name) & {"torch", "lightning"}) for name in seen}
    assert not {k: v for k, v in heavy.items() if v}


def test_report_reads_artifacts_and_imports_no_stage():
    for name in (m for m in MODULES if _within(m, ("xdisc.report",))):
        bad = [m for m in GRAPH[name] if _within(m, STAGES) and not _within(m, ("xdisc.report",))]
        assert not bad, f"{name} imports {bad}"


def test_stages_below_evaluate_and_cli_do_not_import_them():
    for name in MODULES:
        if name in ("xdisc.cli", "xdisc.__main__"):
            continue
        assert "xdisc.cli" not in GRAPH[name], name
        for above in ABOVE_STAGES:
            if name != above:
                assert above not in GRAPH[name], name


def test_only_the_cli_defines_commands():
    """No module but the CLI adds sub-commands (``add_parser`` on a subparsers object)."""
    for name, path in MODULES.items():
        if name == "xdisc.cli":
            continue
        assert ".add_parser(" not in path.read_text(encoding="utf-8"), name
