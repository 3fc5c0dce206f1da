import json

import pytest
import yaml
from accelerate.commands.config.config_args import load_config_from_file
from accelerate.utils import DeepSpeedPlugin, DistributedType
from train_fixtures import REPO

from inf_llava.training import TrainConfig
from inf_llava.training.config import load_yaml

REQUIRED = dict(model="m", data="d.json", output="o")


def test_yaml_then_flags_precedence(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("stage: finetune\nbatch-size: 8\ngrad_accum: 2\nlr: 1e-4\nbf16: true\n")
    config = TrainConfig.from_sources(path, **REQUIRED, batch_size=3, bf16=None, grad_accum=None)
    assert config.batch_size == 3  # flag beats YAML
    assert config.grad_accum == 2 and config.bf16 is True  # YAML beats defaults; None = flag not given
    assert config.lr == 1e-4  # "1e-4" is text to YAML; parsed as a number
    assert TrainConfig.from_sources(None, stage="pretrain", **REQUIRED).lr == 1e-3  # stage default
    assert TrainConfig.from_sources(None, stage="finetune", **REQUIRED).lr == 2e-5


def test_official_recipe_files():
    pretrain = load_yaml(REPO / "configs" / "pretrain.yaml")
    finetune = load_yaml(REPO / "configs" / "finetune.yaml")
    # spec 13.2: 16 x 2 x 8 GPUs = 256 and 8 x 2 x 8 = 128; lr 1e-3 / 2e-5; warmup 0.03, cosine, no decay
    assert (
        pretrain["batch_size"] * pretrain["grad_accum"] * 8,
        finetune["batch_size"] * finetune["grad_accum"] * 8,
    ) == (
        256,
        128,
    )
    assert (pretrain["lr"], finetune["lr"]) == (1e-3, 2e-5)
    assert pretrain["template"] == "plain" and finetune["template"] == "llama3"
    assert not pretrain["group_by_modality_length"] and finetune["group_by_modality_length"]
    for recipe in (pretrain, finetune):
        assert recipe["warmup_ratio"] == 0.03 and recipe["weight_decay"] == 0.0 and recipe["lr_scheduler"] == "cosine"
        assert recipe["max_length"] == 2048 and recipe["bf16"] and recipe["gradient_checkpointing"]
        assert recipe["epochs"] == 1
        TrainConfig(**recipe, **REQUIRED)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("stage: pretrain\nbatchsize: 4\n", "unknown setting 'batchsize'"),
        ("batch_size: four\n", "batch_size must be int, got 'four'"),
        ("bf16: 1\n", "bf16 must be bool, got 1"),
        ("lr: fast\n", "lr must be float, got 'fast'"),
        ("- a\n- b\n", "expected a mapping of settings, got list"),
        ("stage: [\n", "line 2: invalid YAML"),
    ],
)
def test_bad_config_files_name_the_setting(tmp_path, text, problem):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ValueError) as info:
        load_yaml(path)
    assert str(info.value).startswith(str(path)) and problem in str(info.value)


@pytest.mark.parametrize(
    ("overrides", "problem"),
    [
        (dict(stage="sft"), "unknown stage 'sft'"),
        (dict(batch_size=0), "batch_size must be >= 1"),
        (dict(warmup_ratio=2.0), "warmup_ratio must be in [0, 1]"),
        (dict(lr=-1.0), "lr must be > 0"),
        (dict(save_steps=0), "save_steps must be >= 1"),
        (dict(lr_scheduler="step"), "lr_scheduler must be one of"),
    ],
)
def test_invalid_values(overrides, problem):
    with pytest.raises(ValueError) as info:
        TrainConfig(**{"stage": "finetune", **REQUIRED, **overrides})
    assert problem in str(info.value)


def test_missing_required_settings_are_named_as_flags():
    with pytest.raises(ValueError, match="missing required setting.*--data, --output"):
        TrainConfig.from_sources(None, stage="pretrain", model="m")


def test_config_round_trips_through_yaml(tmp_path):
    config = TrainConfig(stage="pretrain", **REQUIRED, qlora=True)
    assert config.lora  # QLoRA is LoRA on a 4-bit LLM
    path = tmp_path / "saved.yaml"
    path.write_text(config.to_yaml())
    assert TrainConfig(**load_yaml(path)) == config


@pytest.mark.parametrize(
    ("name", "engine"),
    [
        ("ddp", DistributedType.MULTI_GPU),
        ("fsdp", DistributedType.FSDP),
        ("deepspeed_zero2", DistributedType.DEEPSPEED),
        ("deepspeed_zero3", DistributedType.DEEPSPEED),
    ],
)
def test_accelerate_configs_are_accepted_by_accelerate(name, engine, monkeypatch):
    config = load_config_from_file(str(REPO / "configs" / "accelerate" / f"{name}.yaml"))
    assert config.distributed_type == engine
    # Precision comes from the training config (--bf16); with a DeepSpeed JSON, accelerate refuses a second source.
    assert config.mixed_precision == (None if engine == DistributedType.DEEPSPEED else "no")
    if engine == DistributedType.FSDP:
        assert config.fsdp_config["fsdp_version"] == 2
        assert "LlamaDecoderLayer" in config.fsdp_config["fsdp_transformer_layer_cls_to_wrap"]
    if engine == DistributedType.DEEPSPEED:
        assert config.deepspeed_config["zero3_init_flag"] is False
        monkeypatch.chdir(REPO)  # the file path is relative to the repository root, as documented
        ds_file = config.deepspeed_config["deepspeed_config_file"]
        stage = json.loads((REPO / ds_file).read_text())["zero_optimization"]["stage"]
        plugin = DeepSpeedPlugin(hf_ds_config=ds_file, gradient_accumulation_steps=2, gradient_clipping=1.0)
        assert plugin.zero_stage == stage == int(name[-1])
        assert plugin.deepspeed_config["gradient_accumulation_steps"] == 2
        if stage == 3:
            assert plugin.deepspeed_config["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"]


def test_shipped_yaml_files_parse():
    for path in (REPO / "configs").rglob("*.yaml"):
        assert isinstance(yaml.safe_load(path.read_text()), dict), path


def test_every_setting_has_a_train_flag():
    from dataclasses import fields

    from inf_llava.cli import build_parser

    args = build_parser().parse_args(["train"])
    assert all(hasattr(args, f.name) and getattr(args, f.name) is None for f in fields(TrainConfig))


def test_stage_defaults_for_image_preprocessing():
    assert load_yaml(REPO / "configs" / "pretrain.yaml")["image_aspect_ratio"] == "square"
    assert load_yaml(REPO / "configs" / "finetune.yaml")["image_aspect_ratio"] == "pad"
    assert TrainConfig(stage="pretrain", **REQUIRED).image_aspect_ratio == "square"
    assert TrainConfig(stage="finetune", **REQUIRED).image_aspect_ratio == "pad"
    with pytest.raises(ValueError, match="image_aspect_ratio must be 'pad' or 'square'"):
        TrainConfig(stage="finetune", image_aspect_ratio="anyres", **REQUIRED)
