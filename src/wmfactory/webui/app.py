"""The board: one gradio Blocks app with a tab per job, and its launch (loopback unless auth guards it)."""

import os
from typing import Optional

import gradio as gr

from . import evaluate_tab, explore_tab, plan_tab, runs_tab, train_tab
from .board import Board


def create_app(saves_dir: str = "saves", dataset_dir: str = "data") -> gr.Blocks:
    """The Blocks app; `app.board` holds its shared state (the training process, the loaded models)."""
    board = Board(saves_dir, dataset_dir)
    with gr.Blocks(title="wmfactory board", analytics_enabled=False) as app:
        gr.Markdown(f"## wmfactory board · runs in `{saves_dir}` · datasets in `{dataset_dir}`")
        with gr.Tabs():
            with gr.Tab("Train", id="train"):
                train_tab.build(board)
            with gr.Tab("Evaluate", id="evaluate"):
                evaluate_tab.build(board)
            with gr.Tab("Explore", id="explore"):
                explore_tab.build(board)
            if plan_tab.available():
                with gr.Tab("Plan", id="plan"):
                    plan_tab.build(board)
            with gr.Tab("Runs", id="runs"):
                runs_tab.build(board)
    app.queue(default_concurrency_limit=2)  # actions run on the queue's workers, off the event loop
    app.board = board
    return app


def launch_app(app: gr.Blocks, host: str = "127.0.0.1", port: Optional[int] = 7860, auth: Optional[str] = None,
               saves_dir: str = "saves", block: bool = True) -> gr.Blocks:
    """Serve `app`; with `block` false, return once it listens (`app.local_url`)."""
    credentials = tuple(auth.split(":", 1)) if auth else None
    app.launch(server_name=host, server_port=port, auth=credentials, prevent_thread_lock=not block, quiet=not block,
               allowed_paths=[os.path.abspath(saves_dir), app.board.files], show_error=False, inbrowser=False)
    return app
