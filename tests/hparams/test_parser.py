import pytest
import torch
import yaml
from safetensors.torch import save_file

from wmfactory.extras.errors import ConfigError, DataError, guarded
from wmfactory.hparams import get_train_args
from wmfactory.hparams.parser import read_args
from wmfactory.train.checkpoints import resolve_resume

BASE = ["--model_name", "m", "--dataset", "d", "--output_dir"]


def test_flags_are_typed_and_aliased(tmp_path):
    parsed = get_train_args(BASE + [
        str(tmp_path / "o"), "--stage", "wm", "--learning_rate", "1e-4", "--bf16", "--embedding_dim", "4",
        "--lora_rank", "16", "--num_train_epochs", "2", "--report_to", "none", "--val_size", "0.1",
    ])
    model, data, training, finetuning, world_model = (parsed.model, parsed.data, parsed.training, parsed.finetuning,
                                                      parsed.world_model)
    assert model.model_name_or_path == "m"
    assert training.learning_rate == 1e-4 and training.bf16 is True and training.num_train_epochs == 2.0
    assert world_model.embedding_dim == 4 and finetuning.lora_rank == 16 and finetuning.lora_alpha == 32
    assert world_model.embedding_loss_weight == 1.0 and world_model.lm_loss_weight == 0.1
    assert world_model.world_model_loss_type == "l2" and world_model.embedding_targets == "next"
    assert data.val_size == 0.1 and data.media_dir == data.dataset_dir == "data"
    assert training.do_train is True and training.remove_unused_columns is False


def test_yaml_with_overrides(tmp_path):
    config = tmp_path / "cfg.yaml"
    config.write_text(
        "### model\nmodel_name_or_path: m\n### method\nstage: wm\nfinetuning_type: full\n"
        "### dataset\ndataset: a,b\ncutoff_len: 64\n### output\noutput_dir: " + str(tmp_path / "o") +
        "\n### train\nlearning_rate: 1.0e-4\nper_device_train_batch_size: 2\n"
    )
    args = read_args([str(config), "learning_rate=5e-5", "lm_loss_weight=0", "plot_loss=true"])
    # OmegaConf reads `5e-5` as a number (PyYAML alone would keep the string)
    assert args["learning_rate"] == 5e-5 and args["lm_loss_weight"] == 0 and args["plot_loss"] is True
    parsed = get_train_args([str(config), "learning_rate=5e-5", "lm_loss_weight=0"])
    assert parsed.data.dataset_names == ["a", "b"] and parsed.data.cutoff_len == 64
    assert parsed.training.learning_rate == 5e-5 and parsed.training.per_device_train_batch_size == 2
    assert parsed.finetuning.finetuning_type == "full" and parsed.world_model.lm_loss_weight == 0.0


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--learning_rat", "1"], "Unknown key `learning_rat`. Did you mean `learning_rate`?"),
        (["--embeding_dim", "4"], "Did you mean `embedding_dim`?"),
        (["--world_model_loss_type", "l3"], "`world_model_loss_type` must be one of l2, l1, smooth_l1, cosine, got 'l3'"),
        (["--lora_rank", "eight"], "`lora_rank` must be a number (int), got 'eight'"),
        (["--finetuning_type", "qlora"], "`finetuning_type` must be one of lora, freeze, full"),
    ],
)
def test_bad_keys_and_values_are_one_clear_error(tmp_path, extra, message):
    with pytest.raises(DataError) as err:
        get_train_args(BASE + [str(tmp_path / "o")] + extra)
    assert message in str(err.value)


def test_an_inline_accelerator_config_with_an_unknown_key_is_one_clear_error(tmp_path):
    config = {"model_name_or_path": "m", "dataset": "d", "output_dir": str(tmp_path / "o"), "stage": "wm",
              "accelerator_config": {"splt_batches": True}}
    with pytest.raises(ConfigError, match="`accelerator_config` has unknown key `splt_batches`"):
        get_train_args(config)
    config["accelerator_config"] = {"split_batches": True}
    assert get_train_args(config).training.accelerator_config.split_batches is True


def resumed(args):
    """The training arguments as a run starts with them: parsed, then the resume rule applied."""
    training = get_train_args(args).training
    resolve_resume(training)
    return training


def fake_checkpoint(path, truncate: str | None = None):
    """A checkpoint folder with the files whose completeness resume checks."""
    path.mkdir(parents=True)
    (path / "trainer_state.json").write_text('{"global_step": 1}')
    (path / "config.json").write_text('{"model_type": "wmfactory_world_model"}')
    save_file({"w": torch.zeros(64)}, str(path / "adapter_model.safetensors"))
    torch.save({"state": torch.zeros(64)}, path / "optimizer.pt")
    torch.save({"last_epoch": 1}, path / "scheduler.pt")
    if truncate:
        data = (path / truncate).read_bytes()
        (path / truncate).write_bytes(data[: len(data) // 2])


def test_existing_output_dir_resumes_from_its_newest_complete_checkpoint(tmp_path):
    out = tmp_path / "o"
    fake_checkpoint(out / "checkpoint-5")
    fake_checkpoint(out / "checkpoint-10")
    training = resumed(BASE + [str(out)])
    assert training.resume_from_checkpoint == str(out / "checkpoint-10")
    training = resumed(BASE + [str(out), "--overwrite_output_dir"])
    assert training.resume_from_checkpoint is None
    # a run killed while writing checkpoint-15 or -20 left them incomplete: resume skips them
    fake_checkpoint(out / "checkpoint-15", truncate="adapter_model.safetensors")
    fake_checkpoint(out / "checkpoint-20", truncate="optimizer.pt")
    (out / "checkpoint-25").mkdir()
    fake_checkpoint(out / "checkpoint-30")  # killed after the Trainer's files, before the world model's config.json
    (out / "checkpoint-30" / "config.json").unlink()
    fake_checkpoint(out / "checkpoint-35")  # killed while writing the config
    (out / "checkpoint-35" / "config.json").write_text("")
    fake_checkpoint(out / "checkpoint-40")  # a checkpoint that cannot restore the learning-rate schedule
    (out / "checkpoint-40" / "scheduler.pt").unlink()
    training = resumed(BASE + [str(out)])
    assert training.resume_from_checkpoint == str(out / "checkpoint-10")
    training = resumed(BASE + [str(out), "--resume_from_checkpoint", "true",
                                               "--overwrite_output_dir"])
    assert training.resume_from_checkpoint == str(out / "checkpoint-10")
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "notes.txt").write_text("x")
    with pytest.raises(DataError, match="already exists and is not empty"):
        resumed(BASE + [str(tmp_path / "p")])


def test_yaml_no_is_the_strategy_no_and_booleans_stay_booleans(tmp_path):
    config = tmp_path / "cfg.yaml"
    config.write_text("model_name_or_path: m\ndataset: d\noutput_dir: " + str(tmp_path / "o") + "\n"
                      "save_strategy: no\nplot_loss: true\ndisable_shuffling: False\nlearning_rate: 1.0e-4\n")
    args = read_args([str(config), "eval_strategy=no", "bf16=true"])
    # OmegaConf reads YAML 1.1, where `no` is a boolean; the parser turns it back into the strategy "no"
    assert {key: args[key] for key in ("save_strategy", "plot_loss", "disable_shuffling", "learning_rate",
                                       "eval_strategy", "bf16")} == {
        "save_strategy": False, "plot_loss": True, "disable_shuffling": False, "learning_rate": 1e-4,
        "eval_strategy": False, "bf16": True}
    parsed = get_train_args([str(config), "eval_strategy=no", "logging_strategy=off"])
    assert parsed.training.save_strategy == "no" and parsed.training.eval_strategy == "no"
    assert parsed.training.logging_strategy == "no" and parsed.finetuning.plot_loss is True
    assert parsed.finetuning.disable_shuffling is False and parsed.training.learning_rate == 1e-4
    with pytest.raises(ConfigError, match=r"`run_name` must be a string \(quote it\), got bool 'False'"):
        get_train_args([str(config), "run_name=no"])


def test_llamafactory_keys_that_transformers_5_renamed_or_we_restrict(tmp_path):
    training = get_train_args(BASE + [str(tmp_path / "o"), "--warmup_ratio", "0.1"]).training
    assert training.warmup_steps == 0.1
    with pytest.raises(DataError, match="`adapter_name_or_path` needs `finetuning_type: lora`"):
        get_train_args(BASE + [str(tmp_path / "o"), "--finetuning_type", "full", "--adapter_name_or_path", "x"])


def test_hugging_face_validation_errors_are_configuration_errors(tmp_path):
    with pytest.raises(ConfigError, match="invalid configuration: .*strategy"):
        get_train_args(BASE + [str(tmp_path / "o"), "--load_best_model_at_end", "--eval_strategy", "steps",
                               "--save_strategy", "epoch"])


def test_user_errors_are_one_line_and_bugs_keep_their_traceback(capsys):
    def bad_config(argv):
        raise ConfigError("`x` must be positive.")

    def bug(argv):
        raise ValueError("an internal mistake")

    assert guarded(bad_config, []) == 1
    assert capsys.readouterr().err == "wmfactory: error: invalid configuration: `x` must be positive.\n"
    with pytest.raises(ValueError, match="an internal mistake"):
        guarded(bug, [])


def test_output_dir_is_required_and_sft_says_which_keys_it_ignores(tmp_path, capsys):
    with pytest.raises(ConfigError, match="`output_dir` is required"):
        get_train_args(["--model_name", "m", "--dataset", "d"])
    get_train_args(["--model_name", "m", "--dataset", "d", "--output_dir", str(tmp_path / "o"),
                    "--embedding_loss_weight", "2", "--world_model_loss_type", "l1"])
    err = capsys.readouterr().err
    assert "`stage` is sft" in err and "embedding_loss_weight, world_model_loss_type have no effect" in err
    get_train_args(BASE + [str(tmp_path / "o"), "--stage", "wm", "--embedding_loss_weight", "2"])
    assert "`stage` is sft" not in capsys.readouterr().err



@pytest.mark.parametrize("extra, message", [
    (["--learning_rate", "nan"], "`learning_rate` must be a positive number, got nan"),
    (["--learning_rate", "0"], "`learning_rate` must be a positive number"),
    (["--per_device_train_batch_size", "0"], "`per_device_train_batch_size` must be at least 1"),
    (["--gradient_accumulation_steps", "0"], "`gradient_accumulation_steps` must be at least 1"),
    (["--lora_rank", "0"], "`lora_rank` must be at least 1"),
    (["--lora_dropout", "1"], "`lora_dropout` must be in [0, 1)"),
    (["--max_samples", "0"], "`max_samples` must be at least 1"),
    (["--interleave_probs", "0.5,0.6"], "`interleave_probs` needs one probability per dataset"),
    (["--resume_from_checkpoint", "/no/such/checkpoint"], "`resume_from_checkpoint` '/no/such/checkpoint' is not"),
    (["--report_to", "wandb"], "`report_to` names wandb, which is not installed"),
    (["--lr_scheduler_type", "bogus"], "`lr_scheduler_type` must be one of linear, cosine"),
])
def test_values_no_run_can_train_with_are_named(tmp_path, extra, message):
    with pytest.raises(ConfigError) as err:
        get_train_args(BASE + [str(tmp_path / "o")] + extra)
    assert message in str(err.value)


def test_output_dir_that_is_a_file_and_a_config_file_with_a_syntax_error(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(ConfigError, match="is a file, not a folder"):
        get_train_args(BASE + [str(tmp_path / "f")])
    (tmp_path / "bad.yaml").write_text("model_name_or_path: m\ndataset: [d\n")
    with pytest.raises(ConfigError, match=r"bad.yaml', line 3, column 1: (did not find )?expected ',' or '\]'"):
        get_train_args([str(tmp_path / "bad.yaml")])


@pytest.mark.parametrize("metric, given, expected", [("eval_rollout_mse", None, False), ("eval_mse", None, False),
                                                     ("eval_skill", None, True), ("eval_loss", None, False),
                                                     ("eval_rollout_mse", True, True)])
def test_errors_chosen_as_best_metric_are_minimised(tmp_path, metric, given, expected):
    """Hugging Face maximises a metric whose name does not end in "loss": an MSE must be minimised."""
    extra = [] if given is None else ["--greater_is_better", str(given).lower()]
    parsed = get_train_args(BASE + [str(tmp_path / "o"), "--stage", "wm", "--metric_for_best_model", metric] + extra)
    assert parsed.training.greater_is_better is expected


@pytest.mark.parametrize("text, message", [
    ("- model_name_or_path: m\n", "must hold a mapping of keys to values"),
    ("3\n", "must hold a mapping of keys to values"),
    ("1: m\n", "every key must be a string, such as learning_rate"),
    ("null: m\n", "every key must be a string, such as learning_rate"),
    ("dataset: a\ndataset: b\n", "line 2, column 1: found duplicate key dataset"),
    ("dataset: !!set {a}\n", "cannot be parsed: Value 'set' is not a supported primitive type"),
])
def test_a_config_file_that_is_not_a_mapping_of_names_is_one_line(tmp_path, text, message):
    (tmp_path / "cfg.yaml").write_text(text)
    with pytest.raises(ConfigError) as err:
        get_train_args([str(tmp_path / "cfg.yaml")])
    assert message in str(err.value) and "\n" not in str(err.value)


def test_a_dict_key_that_is_not_a_string_and_an_override_that_does_not_parse(tmp_path):
    with pytest.raises(ConfigError, match="Every key must be a string, such as learning_rate; got int '7'"):
        get_train_args({"model_name_or_path": "m", "dataset": "d", "output_dir": str(tmp_path / "o"), 7: 1})
    (tmp_path / "cfg.yaml").write_text("model_name_or_path: m\n")
    with pytest.raises(ConfigError, match=r"Override 'dataset=\[d': the value cannot be parsed"):
        read_args([str(tmp_path / "cfg.yaml"), "dataset=[d"])
    with pytest.raises(ConfigError, match="Override 'dataset' must look like key=value"):
        read_args([str(tmp_path / "cfg.yaml"), "dataset"])


def test_overrides_replace_the_file_values_and_numbers_become_the_fields_types(tmp_path):
    (tmp_path / "cfg.yaml").write_text("model_name_or_path: m\ndataset: d\noutput_dir: " + str(tmp_path / "o") +
                                       "\nembedding_dim: {s: 3, a: 1}\nmax_steps: 1e3\n")
    parsed = get_train_args([str(tmp_path / "cfg.yaml"), "embedding_dim=4", "run_name=123", "max_samples=null",
                             "resume_from_checkpoint=false"])
    assert parsed.world_model.embedding_dim == 4 and parsed.training.max_steps == 1000
    assert parsed.training.run_name == "123" and parsed.data.max_samples is None
    flags = get_train_args(BASE + [str(tmp_path / "o"), "--max_samples", "none", "--lora_dropout", "0.25",
                                   "--plot_loss", "yes", "--seed", "-0"])
    assert flags.data.max_samples is None and flags.finetuning.lora_dropout == 0.25
    assert flags.finetuning.plot_loss is True and flags.training.seed == 0
    with pytest.raises(ConfigError, match=r"`max_steps` must be a number \(int\), got '2.5'"):
        get_train_args(BASE + [str(tmp_path / "o"), "--max_steps", "2.5"])
    with pytest.raises(ConfigError, match="`plot_loss` must be true or false, got 'maybe'"):
        get_train_args(BASE + [str(tmp_path / "o"), "--plot_loss", "maybe"])
    with pytest.raises(ConfigError, match="`output_dir` must be a string, got list"):
        get_train_args({"model_name_or_path": "m", "dataset": "d", "output_dir": [1]})


def test_report_to_names_only_trackers_transformers_knows(tmp_path):
    from transformers.integrations import INTEGRATION_TO_CALLBACK

    with pytest.raises(ConfigError) as err:
        get_train_args(BASE + [str(tmp_path / "o"), "--report_to", "tensorbord"])
    assert "`report_to` names tensorbord, which transformers does not report to: use none, all or any of " \
           "azure_ml, " in str(err.value)
    assert all(name in str(err.value) for name in ("tensorboard", "wandb", "trackio", "swanlab"))
    assert set(INTEGRATION_TO_CALLBACK) >= {"tensorboard", "wandb", "trackio", "swanlab", "mlflow"}
    assert get_train_args(BASE + [str(tmp_path / "o"), "--report_to", "none"]).training.report_to == []
    with pytest.raises(ConfigError, match="`report_to` names wandbb, which transformers does not report to"):
        get_train_args(BASE + [str(tmp_path / "o"), "--report_to", "tensorboard, wandbb"])


def test_the_cpu_is_used_when_torch_sees_no_accelerator(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.accelerator, "is_available", lambda: False)
    assert get_train_args(BASE + [str(tmp_path / "o")]).training.use_cpu is True
    monkeypatch.setattr(torch.accelerator, "is_available", lambda: True)
    assert get_train_args(BASE + [str(tmp_path / "o")]).training.use_cpu is False
    assert get_train_args(BASE + [str(tmp_path / "o"), "--use_cpu", "true"]).training.use_cpu is True


def test_load_yaml_reads_a_value_as_an_override_does():
    from wmfactory.hparams.parser import load_yaml

    assert load_yaml("1e-4") == 1e-4 and load_yaml("[a, 2]") == ["a", 2] and load_yaml("s: 3") == {"s": 3}
    assert load_yaml("2026-01-01") == "2026-01-01" and load_yaml("") is None
    for text in ("${x", "!!set {a}"):  # a form's text that is no value: the YAML error the board catches
        with pytest.raises(yaml.YAMLError):
            load_yaml(text)


def test_stage_wm_fills_the_keys_a_run_leaves_unset_with_the_recipe(tmp_path):
    out = str(tmp_path / "o")
    bare = get_train_args(BASE + [out, "--stage", "wm"])
    training = bare.training
    assert training.learning_rate == 1e-3 and training.lr_scheduler_type.value == "cosine"
    assert training.warmup_steps == 0.05 and training.per_device_train_batch_size == 16
    assert bare.finetuning.lora_rank == 16 and bare.world_model.unroll_steps == 2
    assert bare.world_model.eval_rollout_steps == 8 and bare.data_defaults == {"length", "validation", "unroll"}
    assert bare.world_model.lm_loss_weight == 0.1 and bare.world_model.world_model_loss_type == "l2"  # the contract's
    # what a run sets wins; `warmup_ratio` is `warmup_steps`; the length and the validation wait for what is given
    given = get_train_args(BASE + [out, "--stage", "wm", "--learning_rate", "5e-5", "--warmup_ratio", "0.1",
                                   "--num_train_epochs", "2", "--save_strategy", "no", "--unroll_steps", "1"])
    assert given.training.learning_rate == 5e-5 and given.training.warmup_steps == 0.1
    assert given.world_model.unroll_steps == 1 and given.world_model.eval_rollout_steps == 0
    assert given.data_defaults == frozenset() and given.training.lr_scheduler_type.value == "cosine"
    # scheduled sampling is the run's own choice of training on its rollouts (the heads' part: test_unroll.py)
    scheduled = get_train_args(BASE + [out, "--stage", "wm", "--scheduled_sampling_prob", "0.5"])
    assert scheduled.world_model.unroll_steps == 1 and "unroll" not in scheduled.data_defaults
    assert get_train_args(BASE + [out, "--stage", "wm", "--max_steps", "9"]).data_defaults == {"validation", "unroll"}
    # stage sft (LLaMA-Factory's) keeps Hugging Face's values
    sft = get_train_args(BASE + [out])
    assert sft.training.learning_rate == 5e-5 and sft.finetuning.lora_rank == 8 and sft.data_defaults == frozenset()
    assert sft.training.lr_scheduler_type.value == "linear" and sft.world_model.unroll_steps == 1
