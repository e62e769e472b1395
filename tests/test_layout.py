"""The folders' dependencies, read from their imports: no cycle between folders; shared/ serves both
sides and knows neither; client/ needs only requests; tests and benchmarks share devstack/, not each
other. The page's JavaScript modules have no cycle either."""

import ast
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FOLDERS = ("api", "bench", "cli", "client", "devstack", "provision", "shared", "tests", "worker")


def imports_of(folder: str) -> dict[str, set[str]]:
    """Top-level module names each file of `folder` imports (at any depth: lazy imports count too)."""
    found = {}
    for path in sorted((ROOT / folder).rglob("*.py")):
        names = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
        found[str(path.relative_to(ROOT))] = names
    return found


def folder_graph() -> dict[str, set[str]]:
    return {
        folder: {name for names in imports_of(folder).values() for name in names if name in FOLDERS} - {folder}
        for folder in FOLDERS
    }


def cycle_in(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph, as a path, or None."""
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> list[str] | None:
        if node in path:
            return [*path[path.index(node) :], node]
        if node in done:
            return None
        for following in sorted(graph.get(node, ())):
            if found := visit(following, [*path, node]):
                return found
        done.add(node)
        return None

    return next((found for node in sorted(graph) if (found := visit(node, []))), None)


def test_the_cycle_finder_finds_one():
    assert cycle_in({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert cycle_in({"a": {"b"}, "b": set()}) is None


def test_no_cycle_between_folders():
    assert cycle_in(folder_graph()) is None, folder_graph()


def test_no_cycle_between_the_pages_modules():
    static = ROOT / "api" / "static"
    graph = {path.name: set(re.findall(r'from "\./([\w-]+\.js)"', path.read_text())) for path in static.glob("*.js")}
    assert graph["app.js"], "the page's imports are no longer read"
    assert cycle_in(graph) is None, graph


@pytest.mark.parametrize(
    ("folder", "forbidden"),
    [
        ("shared", {"api", "worker", "cli", "client", "provision", "devstack", "bench", "tests"}),
        (
            "client",
            {"api", "worker", "cli", "shared", "provision", "devstack", "tensorflow", "keras", "flask", "celery"},
        ),
        ("worker", {"api", "cli", "client", "provision"}),
        ("api", {"worker", "cli", "client", "tensorflow", "keras"}),
        ("bench", {"tests"}),
        ("tests", {"bench"}),
    ],
)
def test_a_folder_imports_nothing_of_the_other_side(folder, forbidden):
    offending = {path: sorted(names & forbidden) for path, names in imports_of(folder).items() if names & forbidden}
    assert offending == {}


def test_client_needs_only_requests_and_the_standard_library():
    # urllib3: requests' own transport (its Retry); sseclient: reads event streams over requests
    allowed = {"client", "requests", "urllib3", "sseclient", "__future__"}
    third_party = {
        name for names in imports_of("client").values() for name in names
        if name not in sys.stdlib_module_names and name not in allowed
    }  # fmt: skip
    assert third_party == set()
