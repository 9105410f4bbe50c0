"""The library's architecture, checked: layers, import direction, a light command line,
back-links from code to the book, and an API page that lists every module."""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import pytest

import vanishing_tails
from vanishing_tails.book.registry import all_specs

LIB = Path(vanishing_tails.__file__).parent
HEAVY = ("torch", "sklearn", "vanishing_tails.core.lm", "vanishing_tails.core.collapse")


def _modules() -> list[str]:
    return sorted(m.name for m in pkgutil.walk_packages([str(LIB)], "vanishing_tails.") if not m.ispkg)


def _imports(path: Path, module: str) -> set[str]:
    """Absolute names of every module a source file imports (relative imports resolved)."""
    tree = ast.parse(path.read_text())
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            out.add(mod)
            out |= {f"{mod}.{a.name}" for a in node.names}
    return out


def _package_of(path: Path) -> str:
    rel = path.relative_to(LIB.parent).with_suffix("")
    parts = list(rel.parts)
    return ".".join(parts if path.name == "__init__.py" else parts[:-1] + [parts[-1]])


# The one exception to "an experiment never imports another": the closing chapter reads every
# experiment through its common interface, the ``trajectory`` function of these modules, and
# nothing else of them (neither statically nor through the module paths of its spec).
SYNTHESIS = "vanishing_tails.experiments.synthesis"
SYNTHESIS_MAY_IMPORT = {
    "vanishing_tails.experiments.tails.trajectory",
    "vanishing_tails.experiments.families.mixture",
    "vanishing_tails.experiments.families.vae",
    "vanishing_tails.experiments.families.charlm",
    "vanishing_tails.experiments.sharpening.policies",
    "vanishing_tails.experiments.formats.trajectory",
    "vanishing_tails.experiments.preference.tuning",
    "vanishing_tails.experiments.search.training",
    "vanishing_tails.experiments.quality.loop",
    "vanishing_tails.experiments.darling.training",
    "vanishing_tails.experiments.coverage.generator",
}


def test_synthesis_reads_only_the_allowed_trajectories():
    from vanishing_tails.experiments.synthesis.spec import ENTRIES

    modules = {e["module"] for e in ENTRIES.values()}
    assert modules <= SYNTHESIS_MAY_IMPORT, f"synthesis names modules not allowed: {modules - SYNTHESIS_MAY_IMPORT}"
    for path in (LIB / "experiments" / "synthesis").glob("*.py"):
        text = path.read_text()
        uses = re.findall(r"import_module\([^()]*\)(\.\w+)?", text)
        assert all(u == ".trajectory" for u in uses), f"{path.name}: imports a module for more than its trajectory"
        assert "getattr(" not in text and "__import__" not in text, f"{path.name}: dynamic access to a module"


@pytest.mark.parametrize("path", sorted(LIB.rglob("*.py")), ids=lambda p: str(p.relative_to(LIB)))
def test_import_direction(path):
    """core imports nothing above it; an experiment never imports another experiment;
    a spec imports neither torch nor an engine; nothing imports a chapter notebook."""
    mod = _package_of(path)
    imports = _imports(path, mod)
    layer = mod.split(".")[1] if mod.count(".") else ""
    if layer == "core":
        bad = {i for i in imports if i.startswith(("vanishing_tails.book", "vanishing_tails.experiments"))}
        assert not bad, f"{mod}: core imports {bad}"
    if layer == "experiments" and mod.count(".") >= 2:
        own = ".".join(mod.split(".")[:3])
        allowed = {f"{m}{t}" for m in SYNTHESIS_MAY_IMPORT for t in ("", ".trajectory")} if own == SYNTHESIS else set()
        bad = {i for i in imports if i.startswith("vanishing_tails.experiments.") and not i.startswith(own)}
        assert not bad - allowed, f"{mod}: imports another experiment {bad - allowed}"
    if path.name == "spec.py":
        bad = {i for i in imports if i.split(".")[0] in ("torch", "sklearn", "pandas", "scipy")}
        bad |= {i for i in imports if i.startswith("vanishing_tails.core.")}
        assert not bad, f"{mod}: a spec is plain data, but imports {bad}"
    assert not any("chapters" in i for i in imports), f"{mod} imports a chapter"
    if layer == "book":
        bad = {i for i in imports if i.startswith("vanishing_tails.experiments.") and not i.endswith(".spec")}
        assert not bad, f"{mod}: the book machinery imports an engine {bad}"


@pytest.mark.parametrize("argv", [["list"], ["run", "--help"], ["run", "tails", "-p", "q", "7"], ["sweep", "--help"]])
def test_command_line_imports_no_torch_sklearn_or_engine(argv):
    code = (
        "import sys\nfrom vanishing_tails.book import runner\n"
        f"try:\n    runner.main({argv!r})\nexcept SystemExit:\n    pass\n"
        f"print(sorted(m for m in sys.modules if m.startswith({HEAVY!r})))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout[-500:] + out.stderr[-500:]


def test_every_chapter_has_one_experiments_package_with_a_spec(root):
    stems = {s.stem for s in all_specs()}
    assert stems == {p.stem for p in (root / "chapters").glob("*.md")}
    packages = {m.name for m in pkgutil.iter_modules([str(LIB / "experiments")]) if m.ispkg}
    assert len(packages) == len(stems)


def test_the_api_page_lists_every_module(root):
    page = (root / "appendix" / "api.md").read_text()
    listed = set(re.findall(r"automodule:: (\S+)", page))
    public = {m for m in _modules() if not m.split(".")[-1].startswith("_") and m != "vanishing_tails.book.sphinx_ext"}
    assert public - listed == set(), f"modules missing from appendix/api.md: {sorted(public - listed)}"


def _labels(root: Path) -> set[str]:
    labels = set()
    for path in [
        root / "intro.md",
        *sorted((root / "chapters").glob("*.md")),
        *sorted((root / "appendix").glob("*.md")),
    ]:
        labels |= set(re.findall(r"^\(([\w-]+)\)=\s*$", path.read_text(), flags=re.M))
    return labels


def _public_members(mod_name: str):
    mod = importlib.import_module(mod_name)
    for name, obj in vars(mod).items():
        if name.startswith("_") or not (inspect.isfunction(obj) or inspect.isclass(obj)):
            continue
        if getattr(obj, "__module__", None) != mod_name:
            continue  # re-exported from elsewhere: checked where it is defined
        yield name, obj


BACKLINKED = [m for m in _modules() if m.startswith(("vanishing_tails.core.", "vanishing_tails.experiments."))
              and not m.endswith(".spec")]  # fmt: skip


@pytest.mark.parametrize("mod_name", BACKLINKED)
def test_public_functions_link_to_the_section_that_explains_them(mod_name, root):
    """d2l's back-links: every public function or class names, in its docstring, the section
    of the book that explains it, as a reference that resolves (the strict build checks it too)."""
    labels = _labels(root)
    missing, dangling = [], []
    for name, obj in _public_members(mod_name):
        refs = re.findall(r":ref:`([\w-]+)`", inspect.getdoc(obj) or "")
        if not refs:
            missing.append(name)
        dangling += [f"{name} -> {r}" for r in refs if r not in labels]
    assert not missing, f"{mod_name}: no 'Explained in :ref:`...`' in {missing}"
    assert not dangling, f"{mod_name}: references to labels that do not exist: {dangling}"
