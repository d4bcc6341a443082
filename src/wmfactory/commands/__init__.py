"""The commands of `wmfactory <command>`: each is a function of the command-line arguments (a list of strings, a
dict of keys, or None for `sys.argv[1:]`), registered here under its name with a one-line description. `train` is
the training entry point itself (`wmfactory.train.tuner.run_exp`)."""

from dataclasses import dataclass
from typing import Any, Callable


@dataclass(frozen=True)
class Command:
    name: str
    summary: str
    module: str  # imported on use, so that `wmfactory version` and `--help` stay fast
    function: str

    def load(self) -> Callable[[Any], Any]:
        import importlib

        return getattr(importlib.import_module(self.module), self.function)


COMMANDS: dict[str, Command] = {}


def register_command(name: str, summary: str, module: str, function: str) -> None:
    COMMANDS[name] = Command(name, summary, module, function)


register_command("train", "train a world model (stage sft or wm) from a LLaMA-Factory-style YAML file or flags",
                 "wmfactory.train.tuner", "run_exp")
register_command("check", "read every row and embedding file of the datasets: summary and every problem (exit 1 "
                          "if any)", "wmfactory.commands.check", "run_check")
register_command("predict", "write predictions.jsonl and predicted_embeddings/ for a dataset (teacher_forced or "
                            "rollout)", "wmfactory.commands.predict", "run_predict")
register_command("eval", "score predictions against persistence, linear extrapolation, the training mean and "
                         "ridge (table, eval_results.json, plots)", "wmfactory.commands.evaluate", "run_eval")
register_command("encode", "raw text, images or audio -> one embedding file per item, the rows and "
                           "dataset_info.json (resumable)", "wmfactory.commands.encode", "run_encode")
register_command("retrieve", "read predicted vectors as the nearest items of an encoded bank (cosine, top k)",
                 "wmfactory.commands.retrieve", "run_retrieve")
register_command("plan", "choose the actions after each row of a dataset that bring the predicted states to a goal "
                         "(CEM or MPPI): plans.jsonl and plans/", "wmfactory.commands.plan", "run_plan")
register_command("export", "merge a LoRA adapter into the base weights (export_dir)", "wmfactory.commands.export",
                 "run_export")
register_command("api", "serve a trained world model over HTTP (rollout, predict_next, nearest, plan; batched)",
                 "wmfactory.api.server", "run_api")
register_command("webui", "a web board: train from a form and watch the curves, evaluate, explore rollouts and "
                          "counterfactuals, compare runs (gradio)", "wmfactory.webui.command", "run_webui")
