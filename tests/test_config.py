from pathlib import Path

import pytest

from multitask.config import RunConfig
from multitask.config_loader import load_config, parse_set
from multitask.errors import ConfigError


def test_seed_preset_matches_the_starting_point():
    cfg = load_config("seed")
    assert cfg.model.preset == "seed"
    assert (cfg.train.epochs, cfg.train.batch_size, cfg.train.learning_rate) == (10, 32, 1e-3)
    assert (cfg.train.box_loss, cfg.train.label_loss_weight, cfg.train.box_loss_weight) == ("bce", 1.0, 1.0)
    assert cfg.train.augment_flip is False and cfg.train.lr_schedule == "constant"
    assert cfg.train.weighting == "fixed"


def test_layers_apply_in_order(tmp_path: Path):
    toml = tmp_path / "run.toml"
    toml.write_text('[train]\nepochs = 4\nlearning_rate = 0.01\n[registry]\nmodel_name = "birds"\n')
    cfg = load_config("default", toml, ["train.epochs=6", 'data.dataset="shapes"'], {"train": {"batch_size": 8}})
    assert (cfg.train.epochs, cfg.train.learning_rate, cfg.train.batch_size) == (6, 0.01, 8)
    assert cfg.registry.model_name == "birds"


def test_set_values_are_typed():
    assert parse_set("train.augment_flip=false") == {"train": {"augment_flip": False}}
    assert parse_set("train.learning_rate=3e-4") == {"train": {"learning_rate": 3e-4}}
    assert parse_set("data.dataset=shapes") == {"data": {"dataset": "shapes"}}


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"preset": "huge"}, "unknown preset 'huge'"),
    ({"sets": ["train.lr=1"]}, "unknown setting 'train.lr'"),
    ({"sets": ["optimizer.lr=1"]}, "unknown config section 'optimizer'"),
    ({"sets": ["epochs"]}, "section.key=value"),
    ({"sets": ["train.epochs=0"]}, "train.epochs"),
    ({"sets": ["train.box_loss=l7"]}, "train.box_loss"),
    ({"sets": ['train.box_loss="huber+l2"']}, "train.box_loss"),
    ({"sets": ["registry.model_name=../escape"]}, "registry.model_name"),
    ({"config_file": Path("/nonexistent/run.toml")}, "cannot read config file"),
])
def test_bad_config_is_one_clear_error(kwargs, message):
    with pytest.raises(ConfigError, match=message.replace(".", r"\.").replace("(", r"\(")):
        load_config(**kwargs)


def test_an_image_size_the_default_model_cannot_take_is_refused_with_a_size_it_can():
    with pytest.raises(ConfigError, match=r"^invalid config: .* multiple of 8, got 100 \(try 96\)$"):
        load_config(sets=["data.image_size=100"])
    assert load_config("seed", sets=["data.image_size=100"]).data.image_size == 100  # no such limit there


def test_config_round_trips_through_json():
    cfg = load_config("seed", sets=["train.epochs=3"])
    assert RunConfig.model_validate_json(cfg.model_dump_json()) == cfg


@pytest.mark.parametrize(("dataset", "name"), [
    ("shapes", "multitask-shapes"),
    ("folder:/data/My Photos", "multitask-My-Photos"),
    ("folder:/data/birds/", "multitask-birds"),
    ("tfds:voc/2007", "multitask-voc-2007"),
    ("tfds:cars196:2.1.0", "multitask-cars196"),
])
def test_the_default_model_name_follows_the_dataset(dataset, name):
    assert load_config(sets=[f'data.dataset="{dataset}"']).registry.model_name == name
    named = load_config(sets=[f'data.dataset="{dataset}"', 'registry.model_name="mine"'])
    assert named.registry.model_name == "mine"


def test_multi_worker_is_refused_with_why_and_what_instead():
    with pytest.raises(ConfigError) as refused:
        load_config("default", sets=['train.distribute="multi_worker"'])
    message = str(refused.value)
    assert message.startswith('invalid config train.distribute: "multi_worker" is not supported: ')
    assert "keras#20585" in message and 'use "mirrored"' in message
