"""wmfactory: train world models out of causal language models (autoregression in embedding space)."""

__version__ = "0.2.0"


def __getattr__(name: str):
    # `from wmfactory import WorldModel` without importing torch and transformers for `wmfactory version`
    if name == "WorldModel":
        from .model.world_model import WorldModel

        return WorldModel
    raise AttributeError(f"module 'wmfactory' has no attribute {name!r}")
