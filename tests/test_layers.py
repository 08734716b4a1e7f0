"""The import contract between the package's layers (issue 20 item 5), checked over the source's import graph.

Every module of `arc25_src/arc25` belongs to one layer of `LAYERS` (the first whose patterns match
its dotted name, fnmatch-style); each layer names the layers it may import. Every `import` counts,
also the lazy ones inside functions, because a lazy import runs as soon as its path does. The
untrusted child (the sandbox and the DSL the programs import) also may use only the standard
library and `CHILD_THIRD_PARTY`. Edges that break the contract today and are being fixed are in
`KNOWN_VIOLATIONS`, each with the reason and the issue; one that no longer occurs must be removed.

The table is data so that it is adjusted in one place when modules move (a new module in no layer
fails `test_every_module_is_in_a_layer` with the line to add). README.md (Layout) describes it.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path

import arc25

SRC = Path(arc25.__file__).resolve().parent.parent  # arc25_src

# layer: (module patterns, the layers it may import besides itself). Order matters: first match wins.
LAYERS: dict[str, tuple[tuple[str, ...], frozenset[str]]] = {
    # the command line and what only commands use: may import anything, the dev models included
    "commands": (("arc25.__main__", "arc25.cli", "arc25.commands", "arc25.commands.*", "arc25.kaggle",
                  "arc25.kaggle.*", "arc25.report", "arc25.evaluation", "arc25.memory_plan", "arc25.throughput"),
                 frozenset({"devmodels", "run", "scheduler", "solver", "engine", "interface", "executor", "child",
                            "core", "primitives"})),
    # generated and CPU-trained models for tests, benches and the CPU dry run: never on the Kaggle path
    "devmodels": (("arc25.devmodels", "arc25.devmodels.*"),
                  frozenset({"engine", "interface", "executor", "child", "core", "primitives"})),
    # the Kaggle run: the parent (GPUs, model checks, supervisor, progress), claims, one worker per GPU
    "run": (("arc25.run", "arc25.run.*", "arc25.workers", "arc25.claims", "arc25.solve",
             "arc25.supervisor", "arc25.progress"),
            frozenset({"scheduler", "solver", "engine", "interface", "executor", "child", "core", "primitives"})),
    # K task solvers against one engine, through the engine interface
    "scheduler": (("arc25.scheduler",),
                  frozenset({"solver", "interface", "executor", "child", "core", "primitives"})),
    # one task's state machine (search, execute, relabel, learn): asks the engine through its interface
    "solver": (("arc25.search_and_learn", "arc25.relabel", "arc25.slots"),
               frozenset({"interface", "executor", "child", "core", "primitives"})),
    # the engine interface: requests, completions, train samples, the admission rule
    "interface": (("arc25.backends.base",), frozenset({"core", "primitives"})),
    # the engines (hf, vllm, unsloth, scripted, their driver and trainer): never the solver, scheduler or run
    "engine": (("arc25.backends", "arc25.backends.*"), frozenset({"interface", "core", "primitives"})),
    # the untrusted child: what a model-written program's process runs and imports (checked before executor)
    "child": (("arc25.sandbox", "arc25.dsl", "arc25.dsl.*", "arc25.exec_child"), frozenset({"primitives"})),
    # what the child shares with everyone: grid limits and the executor's wire types (stdlib + numpy only)
    "primitives": (("arc25.grid", "arc25.exec_protocol"), frozenset()),
    # the executor's parent pool and its workers (fork the child)
    "executor": (("arc25.execution", "arc25.exec_worker"), frozenset({"child", "primitives", "core"})),
    # data types, files and rules every layer shares (tasks, grids, prompts, config, results, run folder)
    # (metrics and prediction import the executor's result types, TaskExecution and ErrorKind, from
    # arc25.execution: when the split gives those a module of their own, list it here and drop "executor")
    "core": (("arc25", "arc25.errors", "arc25.io", "arc25.grid", "arc25.tasks", "arc25.augment", "arc25.prompts",
              "arc25.config", "arc25.task_result", "arc25.rundir", "arc25.metrics", "arc25.prediction",
              "arc25.attempts", "arc25.submission", "arc25.gpus", "arc25.fp8_checkpoint",
              "arc25.model_check"),
             frozenset({"executor", "primitives"})),
}

# (importer, imported): why it is allowed for now. Remove an entry when its edge goes.
KNOWN_VIOLATIONS: dict[tuple[str, str], str] = {}

# What the untrusted child may import besides the standard library and its own layer (the DSL's arrays).
CHILD_THIRD_PARTY = frozenset({"numpy", "scipy"})

# The Kaggle run's processes: `arc25 run` as started (it loads every command module), and the modules a
# worker loads once it runs (its own top level defers them), each with a module it must have loaded (so
# the check reads a real import list).
KAGGLE_COMMANDS = ((["-m", "arc25", "run", "--help"], "arc25.commands.run"),
                   (["-c", "import arc25.workers, arc25.run, arc25.scheduler, arc25.search_and_learn, arc25.backends"],
                    "arc25.scheduler"))


@dataclass(frozen=True)
class Edge:
    importer: str
    imported: str
    file: Path
    line: int

    def __str__(self) -> str:
        return f"{self.importer} -> {self.imported} ({self.file.relative_to(SRC.parent)}:{self.line})"


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(SRC.joinpath("arc25").rglob("*.py"))}


def imports(name: str, path: Path, known: set[str]) -> list[tuple[str, int]]:
    """(imported module, line) for every import in the file, lazy ones too; `from a import b` is `a.b`
    when that is a module. Relative imports are resolved against the package."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([node.module] if node.module else []))
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.append((sub if sub in known else base, node.lineno))
    return found


def layer_of(name: str) -> str | None:
    return next((layer for layer, (patterns, _) in LAYERS.items()
                 if any(fnmatchcase(name, p) for p in patterns)), None)


def internal_edges() -> list[Edge]:
    found = modules()
    known = set(found)
    return [Edge(name, target, path, line) for name, path in found.items()
            for target, line in imports(name, path, known) if target in known and target != name]


def test_every_module_is_in_a_layer():
    missing = [name for name in modules() if layer_of(name) is None]
    assert not missing, f"modules in no layer (add them to LAYERS in {Path(__file__).name}): {missing}"


def test_imports_follow_the_layers():
    """Each edge goes to the importer's own layer or one it may import; the offending edges are listed."""
    bad, seen = [], set()
    for edge in internal_edges():
        source, target = layer_of(edge.importer), layer_of(edge.imported)
        if target == source or target in LAYERS[source][1]:
            continue
        seen.add((edge.importer, edge.imported))
        if (edge.importer, edge.imported) not in KNOWN_VIOLATIONS:
            bad.append(f"{edge}: layer {source} may not import layer {target}")
    assert not bad, "imports across the layers' contract:\n" + "\n".join(bad)
    stale = set(KNOWN_VIOLATIONS) - seen
    assert not stale, f"KNOWN_VIOLATIONS entries that no longer occur (remove them): {sorted(stale)}"


def test_the_untrusted_child_imports_only_the_stdlib_and_the_dsl_arrays():
    found = modules()
    bad = []
    for name, path in found.items():
        if layer_of(name) not in ("child", "primitives"):
            continue
        for target, line in imports(name, path, set(found)):
            top = target.split(".")[0]
            if top in sys.stdlib_module_names or top in CHILD_THIRD_PARTY or layer_of(target) in ("child", "primitives"):
                continue
            bad.append(f"{name} -> {target} ({path.relative_to(SRC.parent)}:{line})")
    assert not bad, "the child imports more than it may:\n" + "\n".join(bad)


def test_the_kaggle_run_never_loads_the_dev_models():
    """The real entry points, as Kaggle starts them (`arc25 run` loads every command module): no
    `arc25.devmodels` module is imported (`-X importtime` lists every module a process imports).
    The layers above keep it so inside the run; this checks the command modules' top levels too."""
    for args, expected in KAGGLE_COMMANDS:
        done = subprocess.run([sys.executable, "-X", "importtime", *args], capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        loaded = [line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if "|" in line]
        assert expected in loaded, (args, loaded[-5:])
        assert not [m for m in loaded if m.startswith("arc25.devmodels")], (args, loaded)
