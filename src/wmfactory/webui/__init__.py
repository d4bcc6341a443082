"""`wmfactory webui`: a gradio board to train from a form and watch the curves, evaluate, explore rollouts and
counterfactuals, plan, and compare runs."""

from .app import create_app, launch_app

__all__ = ["create_app", "launch_app"]
