"""The Runs tab: every run under saves_dir with its dataset, steps, final losses and evaluation figures; ticked
runs' curves drawn over each other."""

import os

import gradio as gr
import pandas as pd

from .board import Board, shown_errors
from .figures import curves_figure, save_png
from .runs import CURVE_KEYS, list_runs, read_log, run_figures, run_summary


def runs_table(board: Board) -> pd.DataFrame:
    return pd.DataFrame([run_summary(run, board.saves_dir, board.board_folder) for run in list_runs(board.saves_dir)])


def build(board: Board) -> None:
    refresh = gr.Button("Refresh", elem_id="runs-refresh")
    table = gr.Dataframe(runs_table(board), label=f"runs under {board.saves_dir}", interactive=False,
                         buttons=["copy", "fullscreen"])
    table_csv = gr.File(label="runs table (CSV)")
    names = [os.path.relpath(run, board.saves_dir) for run in list_runs(board.saves_dir)]
    ticked = gr.CheckboxGroup(names, label="runs to compare", elem_id="runs-ticked")
    keys = gr.CheckboxGroup(list(CURVE_KEYS), value=["loss", "embedding_loss"], label="curves")
    overlay = gr.Button("Draw the ticked runs' curves", variant="primary")
    curves = gr.Image(label="curves", type="filepath", interactive=False, buttons=["download", "fullscreen"])
    gallery = gr.Gallery(label="the ticked runs' figures (training and evaluation PNGs)", columns=3)

    def refreshed():
        frame = runs_table(board)
        path = board.file("runs.csv")
        frame.to_csv(path, index=False)
        choices = [os.path.relpath(run, board.saves_dir) for run in list_runs(board.saves_dir)]
        return frame, path, gr.update(choices=choices)

    @shown_errors
    def draw(chosen, curve_keys):
        if not chosen:
            raise ValueError("tick the runs to compare.")
        runs = {name: read_log(os.path.join(board.saves_dir, name)) for name in chosen}
        empty = [name for name, records in runs.items() if not records]
        if len(empty) == len(runs):
            raise ValueError(f"no training log (trainer_log.jsonl) in {', '.join(empty)}.")
        figure = curves_figure({n: r for n, r in runs.items() if r}, tuple(curve_keys) or None)
        pictures = [(path, f"{name}: {os.path.basename(path)}") for name in chosen
                    for path in run_figures(os.path.join(board.saves_dir, name))]
        return save_png(figure, board.file("runs_curves.png")), pictures

    refresh.click(refreshed, outputs=[table, table_csv, ticked], api_name="runs")
    overlay.click(draw, inputs=[ticked, keys], outputs=[curves, gallery], api_name="runs_overlay")
