"""The Evaluate tab: `wmfactory eval` on a run folder and a dataset; the report as tables (the model against
every baseline of `eval`, with `ridge_conditions` where the model's frame reads conditions and AutoETS/AutoARIMA
with `baselines: statsforecast`; teacher-forced and per horizon; CRPS and coverage when samples are drawn) and its
plots."""

import os
import threading
from typing import Any

import gradio as gr
import pandas as pd

from ..eval.metrics import forecasters_of
from .board import Board, shown_errors
from .forms import registered_datasets
from .runs import model_runs

_PYPLOT = threading.Lock()  # `eval` draws its PNGs with pyplot, whose state is global


def report_tables(report: dict[str, Any]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(teacher-forced, per horizon) tables of an `eval_results.json` report: one row per stream, (horizon) and
    forecaster, a column per metric (with samples: crps, energy_score, coverage_50, coverage_90 too)."""
    streams = report["streams"] if "streams" in report else {"": report}
    forced, horizons = [], []
    for stream, scores in streams.items():
        forced += _rows(scores.get("teacher_forced", {}), {"stream": stream})
        for horizon, result in scores.get("rollout", {}).get("horizons", {}).items():
            horizons += _rows(result, {"stream": stream, "horizon": int(horizon)})
    return pd.DataFrame(forced), pd.DataFrame(horizons)


def _rows(result: dict[str, Any], where: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for name in forecasters_of(result):
        if isinstance(result.get(name), dict):
            rows.append({**where, "forecaster": name, "vectors": result.get("vectors"), **result[name]})
    if rows and "skill" in result:
        rows[0]["skill"] = result["skill"]
    return rows


def run_evaluation(run_dir: str, datasets: list[str], dataset_dir: str, context_groups: int, num_samples: int,
                   seed: int, batch_size: int, baselines: str = "none") -> dict[str, Any]:
    """`wmfactory eval` in this process, writing into the run folder as the command does."""
    from ..commands.evaluate import run_eval

    if not run_dir:
        raise ValueError("pick a run folder to evaluate.")
    names = [datasets] if isinstance(datasets, str) else list(datasets or [])
    if not names:
        raise ValueError("pick the dataset(s) to evaluate on.")
    args = {"model_name_or_path": run_dir, "dataset": ",".join(names), "dataset_dir": dataset_dir,
            "output_dir": run_dir, "context_groups": int(context_groups), "num_samples": int(num_samples),
            "seed": int(seed), "per_device_eval_batch_size": int(batch_size)}
    if baselines and baselines != "none":
        args["baselines"] = baselines
    with _PYPLOT:
        return run_eval(args)


def build(board: Board) -> None:
    with gr.Row():
        run = gr.Dropdown(model_runs(board.saves_dir), label="run folder", allow_custom_value=True, scale=3,
                          elem_id="eval-run")
        refresh = gr.Button("Refresh", scale=0)
    with gr.Row():
        dataset_dir = gr.Textbox(board.dataset_dir, label="dataset_dir")
        datasets = gr.Dropdown(registered_datasets(board.dataset_dir), multiselect=True, allow_custom_value=True,
                               label="dataset", elem_id="eval-dataset")
        context_groups = gr.Number(1, precision=0, label="context_groups", info="groups given before the rollout")
        num_samples = gr.Number(0, precision=0, label="num_samples",
                                info="draws per prediction (0: the mean only); CRPS and coverage need them")
        seed = gr.Number(0, precision=0, label="seed")
        batch_size = gr.Number(8, precision=0, label="per_device_eval_batch_size")
        baselines = gr.Dropdown(["none", "statsforecast"], value="none", label="baselines",
                                info="statsforecast: AutoETS and AutoARIMA in the rollouts (pip install "
                                     "'wmfactory[forecast]')", elem_id="eval-baselines")
    go = gr.Button("Evaluate", variant="primary", elem_id="eval-run-button")
    status = gr.Markdown()
    forced = gr.Dataframe(label="teacher-forced", interactive=False, buttons=["copy", "fullscreen"])
    horizons = gr.Dataframe(label="rollout, per horizon", interactive=False, buttons=["copy", "fullscreen"])
    with gr.Row():
        forced_csv = gr.File(label="teacher-forced table (CSV)")
        horizons_csv = gr.File(label="per-horizon table (CSV)")
    with gr.Row():
        horizon_plot = gr.Image(label="eval_horizon.png", type="filepath", interactive=False)
        trajectories_plot = gr.Image(label="eval_trajectories.png", type="filepath", interactive=False)
        pit_plot = gr.Image(label="eval_pit.png", type="filepath", interactive=False)

    @shown_errors
    def evaluate(run_dir, names, folder, context, samples, seed_value, batch, extra):
        report = run_evaluation(run_dir, names, folder, context, samples, seed_value, batch, extra)
        forced_table, horizon_table = report_tables(report)
        forced_path, horizon_path = board.file("eval_teacher_forced.csv"), board.file("eval_horizons.csv")
        forced_table.to_csv(forced_path, index=False)
        horizon_table.to_csv(horizon_path, index=False)
        pictures = [os.path.join(run_dir, name) for name in ("eval_horizon.png", "eval_trajectories.png",
                                                             "eval_pit.png")]
        pictures = [path if os.path.isfile(path) else None for path in pictures]
        scored = int(forced_table["vectors"].iloc[0]) if len(forced_table) else 0
        message = f"Evaluated `{run_dir}`: {scored} teacher-forced vectors scored; `eval_results.json` written there."
        return (message, forced_table, horizon_table, forced_path, horizon_path, *pictures)

    def refresh_lists(folder):
        return gr.update(choices=model_runs(board.saves_dir)), gr.update(choices=registered_datasets(folder))

    go.click(evaluate, inputs=[run, datasets, dataset_dir, context_groups, num_samples, seed, batch_size, baselines],
             outputs=[status, forced, horizons, forced_csv, horizons_csv, horizon_plot, trajectories_plot, pit_plot],
             api_name="evaluate")
    refresh.click(refresh_lists, inputs=dataset_dir, outputs=[run, datasets], api_name="eval_refresh")
    dataset_dir.change(refresh_lists, inputs=dataset_dir, outputs=[run, datasets], api_visibility="private")
