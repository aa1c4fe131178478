"""Bundled segmentation networks and the registry train and predict build them from."""

from __future__ import annotations

from segkit.models.encoder_weights import (
    EncoderWeightsError,
    EncoderWeightsReport,
    load_encoder_weights,
)
from segkit.models.parts import count_parameters
from segkit.models.profile import (
    ModelInfo,
    PruningLevel,
    count_flops,
    describe_model,
    example_input_size,
    measure_latency,
    pruning_table,
)
from segkit.models.registry import (
    ModelConfig,
    ModelSpec,
    build_model,
    build_model_from_config,
    get_spec,
    list_models,
)
from segkit.models.resunet import ResNetEncoder, ResUNet
from segkit.models.unet import UNet, input_size_for_output, valid_output_size
from segkit.models.unet3p import UNet3Plus
from segkit.models.unetpp import UNetPlusPlus

__all__ = [
    "EncoderWeightsError",
    "EncoderWeightsReport",
    "ModelConfig",
    "ModelInfo",
    "ModelSpec",
    "PruningLevel",
    "ResNetEncoder",
    "ResUNet",
    "UNet",
    "UNet3Plus",
    "UNetPlusPlus",
    "build_model",
    "build_model_from_config",
    "count_flops",
    "count_parameters",
    "describe_model",
    "example_input_size",
    "get_spec",
    "input_size_for_output",
    "list_models",
    "load_encoder_weights",
    "measure_latency",
    "pruning_table",
    "valid_output_size",
]
