"""The layering the README describes: each layer imports only the layers below it, there is no import cycle, and
the Trainer subclass overrides no private method of `transformers.Trainer`."""

import ast
from pathlib import Path

from transformers import Trainer

from wmfactory.train.wm.trainer import WorldModelTrainer

SOURCE = Path(__file__).resolve().parents[1] / "src" / "wmfactory"
# bottom to top; a module may import its own layer and the layers before it
LAYERS = ["extras", "hparams", "data", "encode", "model", "inference", "eval", "train", "commands", "api", "webui",
          "cli"]
# the one import upwards: WorldModel's row methods (rollout, predict_next, plan) are thin wrappers that import the
# inference engine when called
UPWARD = {("model/world_model.py", "inference")}


def layer_of(module: str) -> str:
    return module.split(".")[1] if module.count(".") else "cli"


def imported_modules(path: Path) -> set[str]:
    """The wmfactory modules a file imports (at any depth of the file, lazy imports included)."""
    package = "wmfactory." + ".".join(path.relative_to(SOURCE).with_suffix("").parts)
    if path.name == "__init__.py":
        package = package.rsplit(".", 1)[0] + ".__init__"
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = ".".join(package.split(".")[: -node.level]) if node.level else ""
            if node.module:
                names = [f"{base}.{node.module}" if base else node.module]
            else:  # `from . import legacy`: the submodules themselves
                names = [f"{base}.{alias.name}" for alias in node.names]
            found.update(name for name in names if name.startswith("wmfactory."))
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("wmfactory."))
    return found


def test_layers_import_only_the_layers_below_them():
    wrong = []
    for path in SOURCE.rglob("*.py"):
        own = layer_of("wmfactory." + ".".join(path.relative_to(SOURCE).with_suffix("").parts))
        if own == "__init__":
            continue
        for module in imported_modules(path):
            other = layer_of(module)
            if (str(path.relative_to(SOURCE)), other) in UPWARD:
                continue
            if other in LAYERS and own in LAYERS and LAYERS.index(other) > LAYERS.index(own):
                wrong.append(f"{path.relative_to(SOURCE)} ({own}) imports {module} ({other})")
    assert wrong == []


def test_no_import_cycle_between_modules():
    graph = {}
    for path in SOURCE.rglob("*.py"):
        name = "wmfactory." + ".".join(path.relative_to(SOURCE).with_suffix("").parts)
        graph[name.removesuffix(".__init__")] = imported_modules(path)

    def reachable(start):
        seen, stack = set(), [start]
        while stack:
            for nxt in graph.get(stack.pop(), ()):
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append(nxt)
        return seen
    cycles = [name for name in graph if name in reachable(name)]
    assert cycles == []


def test_the_trainer_overrides_no_private_trainer_method():
    private = [name for name in vars(WorldModelTrainer)
               if name.startswith("_") and not name.startswith("__") and hasattr(Trainer, name)]
    assert private == []


def test_private_library_api_is_used_only_in_the_compatibility_module():
    private = ("_prepare_inputs", "_commit_hash", "_get_feat_extract_output_lengths", "inspect.signature",
               "filterwarnings(", "_weight_conversions")
    found = [f"{path.relative_to(SOURCE)}: {name}" for path in SOURCE.rglob("*.py") if path.name != "compat.py"
             for name in private if name in path.read_text()]
    assert found == []
