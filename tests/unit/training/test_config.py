"""TrainConfig: sall-method defaults, TOML loading, typed overrides, unknown keys."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from training.protocol.config import (
    ConfigError,
    TrainConfig,
    config_from_dict,
    load_config,
)
from training.protocol.config_toml import format_config_toml


def test_defaults_are_the_sall_method_defaults() -> None:
    cfg = TrainConfig()
    s, o = cfg.sall, cfg.optim
    assert (s.temperature, s.teacher_temperature, s.hard_temperature) == (3.0, 3.0, 3.0)
    assert (s.kd_weight, s.kd_t2_scaling, s.feature_term, s.feature_weight) == (
        1.0,
        False,
        "hint",
        1.0,
    )
    assert (s.normal_policy, s.sampler, s.augment, s.fundus_crop) == (
        "soft_other",
        "uniform",
        False,
        False,
    )
    assert [(t.name, t.num_classes) for t in s.tasks] == [("dr", 5), ("amd", 4)]
    assert (o.lr, o.beta1, o.beta2, o.eps, o.weight_decay) == (1e-5, 0.9, 0.999, 1e-7, 0.0)
    assert (o.batch_size, o.max_epochs, o.patience, o.schedule) == (32, 32, 10, "constant")
    assert cfg.runtime.amp is False and cfg.finetune.max_qwk_drop == 0.10
    assert (cfg.model.backbone, cfg.model.input_size, cfg.model.dropout) == (
        "inception_v3",
        299,
        0.5,
    )


def test_toml_file_and_overrides(tmp_path: Path) -> None:
    path = tmp_path / "run.toml"
    path.write_text(
        '[model]\nbackbone = "resnet18"\ninput_size = 64\n'
        "[sall]\ntemperature = 2\n"
        '[[sall.tasks]]\nname = "dr"\nclasses = ["a", "b", "c"]\n'
        "[optim]\nlr = 1e-4\n",
        encoding="utf-8",
    )
    cfg = load_config(path, ["optim.batch_size=8", "sall.feature_term=none", "runtime.amp=true"])
    assert cfg.model.backbone == "resnet18" and cfg.model.input_size == 64
    assert cfg.sall.temperature == 2.0 and isinstance(cfg.sall.temperature, float)
    assert cfg.sall.tasks[0].classes == ("a", "b", "c") and len(cfg.sall.tasks) == 1
    assert (cfg.optim.lr, cfg.optim.batch_size) == (1e-4, 8)
    assert cfg.sall.feature_term == "none" and cfg.runtime.amp is True


def test_later_override_wins() -> None:
    cfg = load_config(None, ["optim.lr=1", "optim.lr=0.5"])
    assert cfg.optim.lr == 0.5


@pytest.mark.parametrize(
    ("override", "fragment"),
    [
        ("sall.temprature=2", "did you mean 'temperature'"),
        ("optimiser.lr=1", "unknown config key 'optimiser'"),
        ("optim.batch_size=1.5", "must be an integer"),
        ("optim.batch_size=true", "must be an integer"),
        ("sall.kd_t2_scaling=1", "true or false"),
        ("sall.feature_term=hints", "one of 'hint' | 'fusion' | 'none'"),
        ("sall.sampler=3", "one of"),
        ("optim.lr=-1e-3", "optim.lr must be > 0"),
        ("optim.lr=fast", "cannot read 'fast'"),
        ("temperature=3", "section.key=value"),
        ("sall.temperature", "section.key=value"),
        ('sall.tasks=[{name = "dr"}]', "classes"),
        ('sall.tasks=[{name = "dr", classes = ["only"]}]', "2 to 16 classes"),
    ],
)
def test_bad_overrides_raise(override: str, fragment: str) -> None:
    with pytest.raises(ConfigError, match=None) as info:
        load_config(None, [override])
    assert fragment in str(info.value)


def test_unknown_key_in_file_raises(tmp_path: Path) -> None:
    path = tmp_path / "run.toml"
    path.write_text("[sall]\ntemperatur = 3\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="sall.temperatur"):
        load_config(path)


def test_invalid_toml_and_missing_file_raise(tmp_path: Path) -> None:
    path = tmp_path / "run.toml"
    path.write_text("[sall\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(path)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml")


def test_toml_and_dict_round_trip(tmp_path: Path) -> None:
    cfg = load_config(None, ["sall.kd_t2_scaling=true", "optim.eps=1e-8", "runtime.device=cuda:1"])
    path = tmp_path / "out.toml"
    path.write_text(format_config_toml(cfg), encoding="utf-8")
    assert load_config(path) == cfg
    assert config_from_dict(cfg.to_dict()) == cfg


def test_digest_tracks_content() -> None:
    a, b = TrainConfig(), load_config(None, ["sall.temperature=3.0"])
    assert a.digest() == b.digest()
    assert a.digest() != load_config(None, ["sall.temperature=2.0"]).digest()


def test_old_cards_with_hard_both_still_load() -> None:
    # Cards written before soft_other became the default store normal_policy = "hard_both".
    card = Path(__file__).parents[3] / "model_zoo" / "weights" / "demo" / "card.json"
    data = json.loads(card.read_text(encoding="utf-8"))["provenance"]["config"]
    assert data["sall"]["normal_policy"] == "hard_both"
    assert config_from_dict(data).sall.normal_policy == "hard_both"
    assert load_config(None, ["sall.normal_policy=hard_both"]).sall.normal_policy == "hard_both"


def test_the_config_accepts_no_more_than_a_model_card() -> None:
    # training.protocol may not import model_zoo: its copy of the card's limits must agree.
    from model_zoo import cards
    from training.protocol import config

    assert (config.MIN_INPUT_SIZE, config.MAX_INPUT_SIZE) == (
        cards.MIN_INPUT_SIZE,
        cards.MAX_INPUT_SIZE,
    )
    assert (config.MAX_TASKS, config.MAX_CLASSES) == (cards.MAX_TASKS, cards.MAX_CLASSES)
    with pytest.raises(ConfigError, match="input_size"):
        config_from_dict({"model": {"input_size": 4096}})
    with pytest.raises(ConfigError, match="2 to 16 classes"):
        config_from_dict(
            {"sall": {"tasks": [{"name": "dr", "classes": [str(i) for i in range(17)]}]}}
        )
