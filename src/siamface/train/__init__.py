"""The two-stage multi-task trainer (an application on top of the core library; the core
never imports it)."""

from siamface.train.config import (
    DataConfig,
    LossConfig,
    ModelConfig,
    RunConfig,
    StageConfig,
    TrainConfig,
    apply_overrides,
    config_to_dict,
    load_config,
)
from siamface.train.run import TrainResult, build_model, train

__all__ = [
    "DataConfig",
    "LossConfig",
    "ModelConfig",
    "RunConfig",
    "StageConfig",
    "TrainConfig",
    "TrainResult",
    "apply_overrides",
    "build_model",
    "config_to_dict",
    "load_config",
    "train",
]
