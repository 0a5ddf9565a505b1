"""The shape of the code: imports run one way along the data's trip, DVC stages declare every module
that can change their results, and every key of params.yaml is read by something."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "pipeline"

# The data's trip, upstream first. A module may import only modules of its own or an earlier layer
# (and never in a cycle). A new module must be placed here, which is the point: where does it sit?
LAYERS = [
    {"errors", "config", "io", "charts"},           # shared utilities, no knowledge of the data
    {"taxonomy"},
    {"crosswalk"},                                   # the 17 ids → CAP major topics
    {"ingest"},                                      # files → Documents
    {"segment"},                                     # Documents → units
    {"metadata"},                                    # document tables, --meta files → documents with metadata
    {"labels"},                                      # label files → merged labels, training table
    {"agreement"},
    {"hanlp_tokenizer"},
    {"features"},
    {"model"},                                       # units → probabilities
    {"shares", "multilabel", "heldout"},             # shares, intervals, adjustment; label sets; what LODO taught
    {"evaluate"},                                    # leave-one-document-out protocol
    {"train", "selection", "audit"},                   # fit + card; model selection; label review
    {"enrich"},                                      # rows: runners-up, label sets, flags, CAP, metadata
    {"classify"},                                    # reports → rows + summary
    {"compare"},                                     # summaries → shares by group, differences, trend charts
    {"annotate", "labelstudio", "report", "tracking", "pyfunc_model", "plots_template", "spark"},
    {"cli"},
]
LAYER = {name: i for i, names in enumerate(LAYERS) for name in names}


def _modules() -> dict[str, ast.Module]:
    return {p.stem: ast.parse(p.read_text(encoding="utf-8")) for p in PACKAGE.glob("*.py") if p.stem != "__init__"}


def _imports(node: ast.AST, known: set[str]) -> set[str]:
    """Project modules imported anywhere under `node` (module level or inside functions)."""
    found = set()
    for n in ast.walk(node):
        if isinstance(n, ast.ImportFrom) and n.module == "pipeline":
            found |= {a.name for a in n.names if a.name in known}
        elif isinstance(n, ast.ImportFrom) and n.module and n.module.startswith("pipeline."):
            found.add(n.module.split(".")[1])
        elif isinstance(n, ast.Import):
            found |= {a.name.split(".")[1] for a in n.names if a.name.startswith("pipeline.")}
    return found & known


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(tree, set(modules)) - {name} for name, tree in modules.items()}


def _closure(start: set[str], graph: dict[str, set[str]]) -> set[str]:
    seen, todo = set(), list(start)
    while todo:
        m = todo.pop()
        if m not in seen:
            seen.add(m)
            todo.extend(graph.get(m, ()))
    return seen


def test_every_module_has_a_place_on_the_trip() -> None:
    assert set(_modules()) == set(LAYER), "place new modules in LAYERS (and remove deleted ones)"


def test_imports_run_one_way_without_cycles() -> None:
    graph = _graph()
    backwards = [f"{src} → {dst}" for src, dsts in graph.items() for dst in dsts if LAYER[dst] > LAYER[src]]
    assert not backwards, f"imports against the data's direction: {backwards}"
    for module in graph:  # same-layer imports are allowed only without a cycle
        reach = _closure(graph[module], graph)
        assert module not in reach, f"import cycle through {module}"


PIPELINES = [ROOT / "dvc.yaml", ROOT / "experiments" / "dvc.yaml"]


def _stages() -> dict[str, dict]:
    """Every stage of the project's pipelines (the fast loop and the model comparison)."""
    return {name: stage for path in PIPELINES
            for name, stage in yaml.safe_load(path.read_text(encoding="utf-8"))["stages"].items()}


def _stage_commands() -> dict[str, list[str]]:
    return {name: re.findall(r"policy-domains\s+((?:labels\s+)?[\w-]+)", stage["cmd"])
            for name, stage in _stages().items()}


def _command_modules(command: str, graph: dict[str, set[str]]) -> set[str]:
    """Modules a CLI command can run: what its function (and the cli helpers it calls) import, closed."""
    tree = _modules()["cli"]
    functions = {f.name: f for f in tree.body if isinstance(f, ast.FunctionDef)}
    by_command = {}
    for f in functions.values():
        for deco in f.decorator_list:
            if isinstance(deco, ast.Call) and isinstance(deco.func, ast.Attribute) and deco.func.attr == "command":
                prefix = "labels " if getattr(deco.func.value, "id", "") == "labels_app" else ""
                name = deco.args[0].value if deco.args else f.name.replace("_", "-")
                by_command[prefix + name] = f
    todo, seen, imported = [by_command[command]], set(), set()
    while todo:
        f = todo.pop()
        if f.name in seen:
            continue
        seen.add(f.name)
        imported |= _imports(f, set(graph))
        todo += [functions[n.id] for n in ast.walk(f) if isinstance(n, ast.Name) and n.id in functions]
    return _closure(imported, graph) - {"cli"}


def test_dvc_stages_declare_every_module_their_command_runs() -> None:
    """A change to any module a stage's command can run must re-run the stage (`cli` itself, a thin
    layer of argument parsing and messages, is the one exception)."""
    graph = _graph()
    stages = _stages()
    missing = {}
    for name, commands in _stage_commands().items():
        needed = set().union(*(_command_modules(c.split()[-1] if c.startswith("labels") else c, graph)
                               for c in commands))
        declared = {Path(d).stem for d in stages[name].get("deps", []) if str(d).startswith("pipeline/")}
        if needed - declared:
            missing[name] = sorted(f"pipeline/{m}.py" for m in needed - declared)
    assert not missing, f"dvc.yaml deps to add: {missing}"


def _leaves(prefix: str, value: object) -> list[str]:
    if isinstance(value, dict):
        return [leaf for k, v in value.items() for leaf in _leaves(f"{prefix}.{k}" if prefix else k, v)]
    return [prefix]


def test_every_params_key_is_read() -> None:
    from pipeline.model import TRAINING_DATA_KEYS, DomainClassifier

    params = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    source = "\n".join(p.read_text(encoding="utf-8") for p in PACKAGE.glob("*.py"))
    dvc_yaml = "\n".join(p.read_text(encoding="utf-8") for p in PIPELINES)
    estimator_keys = set(DomainClassifier._get_param_names()) | set(TRAINING_DATA_KEYS)
    unread = []
    for leaf in _leaves("", params):
        section, key = leaf.split(".", 1)
        if section == "train" and key in estimator_keys:
            continue
        if f'"{key}"' in source or f"'{key}'" in source or "${" + leaf + "}" in dvc_yaml:
            continue
        unread.append(leaf)
    assert not unread, f"params.yaml keys no code reads: {unread}"
