"""The arrows between folders that docs/architecture.md says must never exist, read from the code's imports.

Imports inside functions count too: a lazy import keeps start-up light, it must not hide a cycle or a wrong arrow.
"""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

# importer (a package or module prefix) -> prefixes it must never import, and why
FORBIDDEN = {
    "notify": ({"cft"}, "notify runs where cft is not installed (the jobs controller, a laptop)"),
    "cft.losses": ({"cft.storage", "cft.cli", "cft.training", "cft.registry", "cft.demo"},
                   "the loss is maths on tensors"),
    "cft.modeling": ({"cft.storage", "cft.cli", "cft.training", "cft.registry", "cft.demo", "cft.evaluation"},
                     "modeling takes local folders; the CLI fetches them"),
    "cft.data": ({"cft.storage", "cft.cli", "cft.training", "cft.registry", "cft.demo"}, "data knows no runs"),
    "cft.storage": ({"cft.cli", "cft.training", "cft.registry", "cft.demo", "cft.modeling"},
                    "storage moves bytes; it knows no models"),
    "cft": ({"cft.cli"}, "only the CLI (and `python -m cft`) assembles the commands"),
}
ALLOWED_INTO_CLI = ("cft.cli", "cft.__main__")


def module_name(path: Path) -> str:
    name = ".".join(path.relative_to(REPO).with_suffix("").parts)
    return name.removesuffix(".__init__")


def imports_of(path: Path, known: set[str]) -> set[str]:
    """Every first-party module `path` imports, at module level or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        found.update(name for name in names if name in known or name.split(".")[0] in ("cft", "notify"))
    return found - {module_name(path)}


def import_graph() -> dict[str, set[str]]:
    paths = sorted((REPO / "cft").rglob("*.py")) + sorted((REPO / "notify").rglob("*.py"))
    known = {module_name(path) for path in paths}
    return {module_name(path): imports_of(path, known) for path in paths}


def within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def test_the_scanner_sees_imports_inside_functions():
    graph = import_graph()
    assert "cft.storage.bucket" in graph["cft.training.run"]  # module level
    assert "cft.modeling.backbone" in graph["cft.training.run"]  # inside _build_trainer
    assert "notify.redact" in graph["cft.storage.manifest"]  # inside write_manifest


def test_no_forbidden_arrow():
    wrong = []
    for importer, imported in import_graph().items():
        for prefix, (banned, why) in FORBIDDEN.items():
            if not within(importer, prefix) or (prefix == "cft" and importer.startswith(ALLOWED_INTO_CLI)):
                continue
            wrong += [f"{importer} -> {name} ({why})" for name in sorted(imported)
                      if any(within(name, ban) for ban in banned)]
    assert not wrong, "\n".join(wrong)


def test_no_import_cycle():
    """Between modules, counting lazy imports: a cycle means one of the two is in the wrong place."""
    graph = import_graph()
    cycles, index, low, stack, on_stack = [], {}, {}, [], set()

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in graph.get(node, ()):
            if other not in graph:
                continue
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    assert not cycles, cycles


@pytest.mark.parametrize("args", [["--help"], ["runs", "--help"], ["check", "--help"]])
def test_cli_help_and_runs_do_not_load_torch(args, tmp_path):
    code = ("import sys\nfrom cft.cli.main import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
            "print('torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip().splitlines()[-1] == "False", done.stderr[-1000:]


def test_runs_listing_does_not_load_torch(tmp_path):
    code = "import sys\nfrom cft.cli.main import main\nmain(['runs', sys.argv[1]])\nprint('torch' in sys.modules)"
    (tmp_path / "runs").mkdir()
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip().splitlines()[-1] == "False", done.stderr[-1000:]
