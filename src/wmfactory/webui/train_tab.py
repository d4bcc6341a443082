"""The Train tab: the form generated from the training dataclasses, the equivalent YAML and command, Start / Stop,
the progress and the live curves of the run's log."""

import html
import os

import gradio as gr

from .board import Board, one_line, shown_errors
from .figures import curves_figure, save_png
from .forms import (
    OTHER_TRAINING_SECTION,
    SECTION_ORDER,
    FormField,
    check_train_config,
    config_path,
    config_yaml,
    form_config,
    form_fields,
    initial_values,
    registered_datasets,
)
from .runs import progress, read_log


def field_input(field: FormField, value, datasets: list[str]):
    common = dict(label=field.name, info=field.help or None, elem_id=f"train-{field.name}")
    if field.kind == "bool":
        return gr.Checkbox(value=bool(value), **common)
    if field.kind == "choice":
        return gr.Dropdown(choices=list(field.choices), value=value, **common)
    if field.kind == "dataset":
        return gr.Dropdown(choices=datasets, value=list(value), multiselect=True, allow_custom_value=True, **common)
    return gr.Textbox(value=value, lines=1, max_lines=1, **common)


def build(board: Board) -> None:
    fields = form_fields()
    values = initial_values(fields, board.saves_dir, board.dataset_dir)
    datasets = registered_datasets(board.dataset_dir)
    inputs: dict[str, gr.components.Component] = {}

    def equivalent(*form_values):
        try:
            config = form_config(fields, list(form_values))
        except ValueError as err:  # shown in place of the YAML while the form is being filled in
            return f"# {one_line(err)}", ""
        path = config_path(board.board_folder, str(config.get("output_dir", "")))
        return config_yaml(config), f"wmfactory train {path}"

    first_yaml, first_command = equivalent(*values)
    with gr.Row():
        with gr.Column(scale=3):
            for section in SECTION_ORDER + (OTHER_TRAINING_SECTION,):
                with gr.Accordion(section, open=section in SECTION_ORDER[:3]):
                    with gr.Row(equal_height=False):
                        for field, value in zip(fields, values):
                            if field.section == section:
                                with gr.Column(min_width=260):
                                    inputs[field.name] = field_input(field, value, datasets)
        with gr.Column(scale=2):
            command = gr.Textbox(first_command, label="command", interactive=False, elem_id="train-command")
            preview = gr.Code(first_yaml, label="the equivalent YAML", language="yaml", interactive=False,
                              elem_id="train-yaml")
            with gr.Row():
                start = gr.Button("Start", variant="primary", elem_id="train-start")
                stop = gr.Button("Stop (save a checkpoint)", variant="stop", elem_id="train-stop")
            bar = gr.HTML(elem_id="train-progress")
            status = gr.Markdown(elem_id="train-status")
            curves = gr.Image(label="curves", type="filepath", interactive=False, buttons=["download", "fullscreen"],
                              elem_id="train-curves")
            console = gr.Textbox(label="console", lines=8, max_lines=8, interactive=False, elem_id="train-console")
    components = [inputs[f.name] for f in fields]

    @shown_errors
    def start_run(*form_values):
        config = form_config(fields, list(form_values))
        check_train_config(config)
        output_dir = str(config["output_dir"])
        path = config_path(board.board_folder, output_dir)
        text = config_yaml(config)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        board.forget_model(output_dir)
        board.job.start(path, output_dir, path[: -len(".yaml")] + ".log")
        return f"Started `wmfactory train {path}`.", text

    @shown_errors
    def stop_run():
        board.job.stop()
        return "Stopping: the trainer saves a checkpoint at the end of this step."

    last_drawn: dict[str, object] = {}

    def watch():
        job = board.job
        records = read_log(job.output_dir) if job.output_dir else []
        step, total, elapsed, left = progress(records)
        state = job.state()
        text = f"**{state}**" + (f" · `{job.output_dir}`" if job.output_dir else "")
        if total:
            text += f" · step {step} / {total}" + (f" · {elapsed} elapsed, about {left} left" if state == "running"
                                                   else "")
        if (error := job.error_line()) is not None:
            text += f"\n\n{error}"
        bar_html = (f'<progress value="{step}" max="{total or 1}" style="width:100%"></progress>'
                    f"<div>{html.escape(f'{step} / {total}')}</div>") if total else ""
        key = (job.output_dir, len(records), state)
        if records and last_drawn.get("key") != key:
            last_drawn["key"] = key
            last_drawn["png"] = save_png(curves_figure({os.path.basename(job.output_dir): records}),
                                         board.file("curves.png"))
        return bar_html, text, last_drawn.get("png") if records else None, job.console_tail()

    def refresh_datasets(dataset_dir):
        names = registered_datasets(dataset_dir)
        return gr.update(choices=names), gr.update(choices=names)

    gr.on([c.change for c in components], equivalent, inputs=components, outputs=[preview, command],
          api_name="preview", show_progress="hidden")
    start.click(start_run, inputs=components, outputs=[status, preview], api_name="start")
    stop.click(stop_run, outputs=status, api_name="stop")
    timer = gr.Timer(2.0)
    timer.tick(watch, outputs=[bar, status, curves, console], api_name="train_status", show_progress="hidden")
    inputs["dataset_dir"].change(refresh_datasets, inputs=inputs["dataset_dir"],
                                 outputs=[inputs["dataset"], inputs["eval_dataset"]], api_name="train_datasets")
    return fields, components, preview, command
