"""The Explore tab: a row (from a dataset, or pasted), the model's rollout from a chosen context length against
the true vectors, dimension by dimension (a fan chart of sampled futures for a distributional head), future
conditions edited in a table for a counterfactual rollout beside the factual one, and the nearest items of a
retrieval bank."""

import gradio as gr
import pandas as pd

from ..extras.errors import DataError
from .board import Board, shown_errors
from .figures import rollout_figure, save_png
from .forms import registered_datasets
from .rollouts import (
    as_streams,
    condition_table,
    conditions_from_table,
    neighbour_table,
    panels,
    parse_row,
    rollout_numbers,
    row_streams,
)
from .runs import model_runs

DISTRIBUTIONAL_HEADS = ("mixture", "diffusion")


def is_distributional(model) -> bool:
    return model.config.prediction_head_type in DISTRIBUTIONAL_HEADS


def explore(board: Board, run_dir, dataset_dir, dataset, index, pasted, context_groups, steps, num_samples, seed,
            table, bank, top_k):
    """-> (message, figure PNG, numbers table, its CSV, neighbours table, its CSV)."""
    model = board.model(run_dir)
    row = parse_row(pasted, dataset, index)
    context = int(context_groups)
    if context < 1:
        raise DataError(f"`context_groups` must be at least 1 (the rollout starts after them), got {context}.")
    truth = row_streams(model, model.encode_row(row, dataset_dir), context)
    predicted = model.config.predicted_streams
    steps = int(steps) or sum(len(truth[name].future) for name in predicted)
    if steps < 1:
        raise DataError(f"the row has no vector of a predicted stream after its first {context} group(s): set "
                        "`steps` (how many vectors to generate) or a smaller `context_groups`.")
    sampled = is_distributional(model) and int(num_samples) > 0
    options = dict(dataset_dir=dataset_dir, context_groups=context, num_samples=int(num_samples) if sampled else None,
                   seed=int(seed))
    conditions = {name: s.future for name, s in truth.items() if model.config.is_given(name) and len(s.future)}
    factual = as_streams(model, model.rollout(row, steps, conditions=conditions or None, **options))
    edited = conditions_from_table(model, table) if conditions or table is not None else {}
    counterfactual = as_streams(model, model.rollout(row, steps, conditions=edited, **options)) if edited else None
    figure = rollout_figure(panels(truth, factual, counterfactual, sampled))
    numbers = rollout_numbers(truth, factual, counterfactual, sampled)
    figure_path, numbers_path = save_png(figure, board.file("rollout.png")), board.file("rollout.csv")
    numbers.to_csv(numbers_path, index=False)
    neighbours, neighbours_path = pd.DataFrame(), None
    if bank and bank.strip():
        neighbours = neighbour_table(model, factual, bank.strip(), top_k, sampled)
        neighbours_path = board.file("neighbours.csv")
        neighbours.to_csv(neighbours_path, index=False)
    kind = f"{int(num_samples)} sampled futures per rollout (median, 50% and 90% bands)" if sampled else (
        "the head's mean" + (f" ({model.config.prediction_head_type} head: set num_samples for a fan chart)"
                             if is_distributional(model) else ""))
    message = f"{steps} vectors generated after {context} group(s) of context: {kind}."
    if counterfactual is not None:
        message += " Counterfactual: the conditions of the table; factual: the row's own."
    return message, figure_path, numbers, numbers_path, neighbours, neighbours_path


def load_row(board: Board, run_dir, dataset_dir, dataset, index, pasted, context_groups):
    """-> (a description of the model and the row, the row's future conditions as an editable table)."""
    model = board.model(run_dir)
    row = parse_row(pasted, dataset, index)
    truth = row_streams(model, model.encode_row(row, dataset_dir), int(context_groups))
    config = model.config
    lines = [f"`{run_dir}`: streams {dict(config.stream_dims)}, predicted {config.predicted_streams}, head "
             f"`{config.prediction_head_type}`."]
    lines += [f"stream `{name}`: {len(s.context)} vector(s) in the context, {len(s.future)} after it"
              for name, s in truth.items()]
    return "\n\n".join(lines), condition_table(model, truth)


def build(board: Board) -> None:
    with gr.Row():
        run = gr.Dropdown(model_runs(board.saves_dir), label="run folder", allow_custom_value=True, scale=3,
                          elem_id="explore-run")
        refresh = gr.Button("Refresh", scale=0)
    with gr.Row():
        dataset_dir = gr.Textbox(board.dataset_dir, label="dataset_dir")
        datasets = registered_datasets(board.dataset_dir)
        dataset = gr.Dropdown(datasets, value=datasets[0] if datasets else None, allow_custom_value=True,
                              label="dataset", elem_id="explore-dataset")
        index = gr.Number(0, precision=0, label="row index")
    pasted = gr.Textbox(label="or paste a row (JSON in the dataset format; relative embedding paths resolve against "
                              "dataset_dir)", lines=2)
    with gr.Row():
        context_groups = gr.Number(1, precision=0, label="context_groups", info="groups given before the rollout",
                                   elem_id="explore-context_groups")
        steps = gr.Number(0, precision=0, label="steps", info="vectors to generate (0: as many as the row has)")
        num_samples = gr.Number(32, precision=0, label="num_samples",
                                info="sampled futures of a mixture or diffusion head (a fan chart)")
        seed = gr.Number(0, precision=0, label="seed")
    with gr.Row():
        bank = gr.Textbox(label="retrieval bank (an `encode` output folder, optional)", scale=3)
        top_k = gr.Number(3, precision=0, label="top_k")
    load = gr.Button("Load the row", elem_id="explore-load")
    info = gr.Markdown()
    conditions = gr.Dataframe(label="future conditions (edit them for a counterfactual rollout)", interactive=True,
                              elem_id="explore-conditions")
    go = gr.Button("Roll out", variant="primary", elem_id="explore-rollout")
    message = gr.Markdown()
    figure = gr.Image(label="rollout", type="filepath", interactive=False, buttons=["download", "fullscreen"],
                      elem_id="explore-figure")
    numbers = gr.Dataframe(label="the rollout's numbers", interactive=False, elem_id="explore-numbers")
    numbers_csv = gr.File(label="rollout table (CSV)")
    neighbours = gr.Dataframe(label="nearest items of the bank", interactive=False)
    neighbours_csv = gr.File(label="nearest items (CSV)")

    row_inputs = [run, dataset_dir, dataset, index, pasted, context_groups]
    load.click(shown_errors(lambda *a: load_row(board, *a)), inputs=row_inputs, outputs=[info, conditions],
               api_name="explore_row")
    go.click(shown_errors(lambda *a: explore(board, *a)),
             inputs=row_inputs + [steps, num_samples, seed, conditions, bank, top_k],
             outputs=[message, figure, numbers, numbers_csv, neighbours, neighbours_csv], api_name="explore")
    refresh.click(lambda folder: (gr.update(choices=model_runs(board.saves_dir)),
                                  gr.update(choices=registered_datasets(folder))),
                  inputs=dataset_dir, outputs=[run, dataset], api_name="explore_refresh")
