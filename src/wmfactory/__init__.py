"""wmfactory: train world models out of causal language models (autoregression in embedding space).

The Python API, each imported on first use (so that `wmfactory version` does not import torch and transformers):
- `WorldModel`: load a trained world model (`WorldModel.from_pretrained(output_dir)`), `rollout`, `predict_next`;
- `train(keys)`, `predict(keys)`, `evaluate(keys)`, `export(keys)`: the commands, with the same keys as the YAML
  files and flags (a dict, or a list of command-line arguments); they return the trainer, the path of
  predictions.jsonl, the evaluation report (a dict) and the export folder;
- `encode(keys)`, `retrieve(keys)`: raw items -> embedding files, and predicted vectors -> their nearest encoded
  items; `nearest(vectors, bank, k)`: the cosine top-k of a bank matrix, with scores;
- `Client(base_url, api_key=...)`: a world model served by `wmfactory api`, with `rollout`, `predict_next`,
  `nearest` and `plan` returning numpy arrays.
"""

__version__ = "0.2.0"

_API = {
    "WorldModel": ("wmfactory.model.world_model", "WorldModel"),
    "train": ("wmfactory.train.tuner", "run_exp"),
    "predict": ("wmfactory.commands.predict", "run_predict"),
    "evaluate": ("wmfactory.commands.evaluate", "run_eval"),
    "export": ("wmfactory.commands.export", "run_export"),
    "encode": ("wmfactory.commands.encode", "run_encode"),
    "retrieve": ("wmfactory.commands.retrieve", "run_retrieve"),
    "nearest": ("wmfactory.encode.retrieval", "nearest"),
    "Client": ("wmfactory.api.client", "Client"),
}


def __getattr__(name: str):
    if name in _API:
        import importlib

        module, attribute = _API[name]
        return getattr(importlib.import_module(module), attribute)
    raise AttributeError(f"module 'wmfactory' has no attribute {name!r}")
