"""A model folder whose config.json holds sizes no model has, or values wmfactory does not know, is refused with one
line naming the key, before anything is allocated; the language model's own config.json likewise."""

import json
import shutil

import pytest
from conftest import TINY_MODEL, tiny_world_model

from wmfactory import WorldModel
from wmfactory.extras.errors import ConfigError, DataError
from wmfactory.hparams import ModelArguments, WorldModelArguments
from wmfactory.model import build_world_model


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    from transformers import AutoTokenizer

    folder = tmp_path_factory.mktemp("saved") / "wm"
    model = tiny_world_model(embedding_dim=4)
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(TINY_MODEL).save_pretrained(folder)
    return folder


def edited(saved, tmp_path, change):
    folder = shutil.copytree(saved, tmp_path / "edited")
    config = json.loads((folder / "config.json").read_text())
    change(config)
    (folder / "config.json").write_text(json.dumps(config))
    return str(folder)


def setter(*keys, value):
    def change(config):
        for key in keys[:-1]:
            config = config[key]
        config[keys[-1]] = value
    return change


@pytest.mark.parametrize("change, message", [
    (setter("embedding_dim", value=10**9), "`embedding_dim` is 1000000000 in config.json (a size must be an integer "
                                           "from 1 to 1048576)"),
    (setter("embedding_dim", value=-4), "`embedding_dim` is -4"),
    (setter("streams", value={"m": 0}), "`streams.m` is 0"),
    (setter("mixture_components", value=10**7), "`mixture_components` is 10000000"),
    (setter("prediction_head_type", value="bogus"), "`prediction_head_type` is \"bogus\" in config.json (one of "
                                                    "diffusion, linear, mixture, mlp"),
    (setter("world_model_loss_type", value="l7"), "`world_model_loss_type` is \"l7\" in config.json (one of cosine, "
                                                  "l1, l2, smooth_l1"),
    (setter("lm_loss_weight", value="NaN"), "`lm_loss_weight` is \"NaN\""),
    (setter("missing_fill_steps", value=10**9), "`missing_fill_steps` is 1000000000 in config.json (an integer from "
                                                "0 to 1000)"),
    (setter("missing_fill_steps", value=2.5), "`missing_fill_steps` is 2.5"),
    (setter("text_config", "hidden_size", value=2**40), "`hidden_size` is 1099511627776 in config.json"),
    (setter("text_config", "num_hidden_layers", value=-1), "`num_hidden_layers` is -1"),
    (setter("text_config", value="llama"), "`text_config` is \"llama\""),
    (setter("text_config", "vocab_size", value=10**6), "config.json claims at least 64,008,192 weights (vocab_size "
                                                       "1000000, hidden_size 64, 2 layers) but the weights files hold"),
])
def test_a_hostile_world_model_config_is_refused_before_it_is_built(saved, tmp_path, change, message):
    folder = edited(saved, tmp_path, change)
    with pytest.raises(DataError) as caught:
        WorldModel.from_pretrained(folder)
    assert f"'{folder}': " in str(caught.value) and message in str(caught.value), str(caught.value)


def test_the_saved_folder_itself_loads(saved):
    assert WorldModel.from_pretrained(str(saved)).config.embedding_dim == 4


def test_a_hostile_base_model_config_is_refused(tmp_path):
    folder = shutil.copytree(TINY_MODEL, tmp_path / "base")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "intermediate_size": -176}))
    with pytest.raises(ConfigError, match=rf"`model_name_or_path` '{folder}': `intermediate_size` is -176 in "
                                          r"config.json \(a size must be an integer from 1 to 524288\)"):
        build_world_model(ModelArguments(model_name_or_path=str(folder)), WorldModelArguments(), 4)
