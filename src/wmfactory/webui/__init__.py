"""`wmfactory webui`: a gradio board to train from a form and watch the curves, evaluate, explore rollouts and
counterfactuals, plan, and compare runs. gradio is imported when the board is built, so that `wmfactory webui`
without it ends with one line saying what to install."""

__all__ = ["create_app", "launch_app"]


def __getattr__(name: str):
    if name in __all__:
        from . import app

        return getattr(app, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
