"""Device, mixed precision and memory-format choices shared by train and predict.

``resolve_runtime(device="auto", precision="auto")`` turns the CLI's strings into a
:class:`Runtime` that moves models and batches and opens the autocast context::

    rt = resolve_runtime("auto", "auto")
    model = rt.prepare_model(model)
    with rt.autocast():
        logits = model(rt.prepare_input(images))
    loss = loss_fn(logits, target)          # losses cast logits to float32 themselves
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from segkit.errors import OptionError

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")
PRECISION_CHOICES = ("auto", "fp32", "bf16", "fp16")
CHANNELS_LAST_CHOICES = ("auto", "on", "off")

_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` → cuda if available, else mps, else cpu; ``cuda:1`` selects a GPU.

    Raises ``OptionError`` for an unknown name or a device this machine lacks.
    """
    text = str(name).strip().lower()
    kind, _, index = text.partition(":")
    if kind not in DEVICE_CHOICES or (index and (kind != "cuda" or not index.isdigit())):
        raise OptionError(f"unknown device {name!r}; choose one of: {', '.join(DEVICE_CHOICES)}")
    if kind == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise OptionError("device cuda requested but no CUDA GPU is available; use cpu")
        if index and int(index) >= torch.cuda.device_count():
            raise OptionError(
                f"device {text} requested but only {torch.cuda.device_count()} GPU(s) exist"
            )
    if kind == "mps" and not _mps_available():
        raise OptionError("device mps requested but Apple MPS is not available; use cpu")
    return torch.device(text)


def cpu_supports_bf16() -> bool:
    """Whether this CPU has bf16 matrix instructions (AVX512-BF16 or AMX) oneDNN uses.

    Without them bf16 autocast on the CPU is emulated and slower than fp32.
    """
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``precision`` on ``device``; ``None`` means plain fp32.

    ``auto`` picks bf16 on CUDA GPUs that support it (else fp16), bf16 on CPUs with
    bf16 instructions, and fp32 otherwise (including MPS). Explicit ``fp16`` is refused
    on the CPU, where PyTorch's fp16 kernels are slow and need no loss scaling anyway.
    """
    choice = str(precision).strip().lower()
    if choice not in PRECISION_CHOICES:
        raise OptionError(
            f"unknown precision {precision!r}; choose one of: {', '.join(PRECISION_CHOICES)}"
        )
    if choice == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        if device.type == "cpu" and cpu_supports_bf16():
            return torch.bfloat16
        return None
    if choice == "fp16" and device.type == "cpu":
        raise OptionError("precision fp16 is not supported on the CPU; use bf16 or fp32")
    return _DTYPES[choice]


@dataclass(frozen=True)
class Runtime:
    """Where and how a model runs: device, autocast dtype (``None`` = fp32), memory format."""

    device: torch.device
    amp_dtype: torch.dtype | None = None
    channels_last: bool = False

    @property
    def needs_grad_scaler(self) -> bool:
        """fp16 gradients underflow without loss scaling (bf16 has fp32's exponent range)."""
        return self.amp_dtype == torch.float16

    @property
    def precision(self) -> str:
        """``fp32``, ``bf16`` or ``fp16``: the name a run records in its config."""
        return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.amp_dtype]

    def autocast(self) -> contextlib.AbstractContextManager[None]:
        """``torch.autocast`` for this device and dtype, or a no-op context for fp32."""
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def prepare_model(self, model: nn.Module) -> nn.Module:
        """Move ``model`` to the device (and to channels_last when enabled); returns it."""
        model = model.to(self.device)
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        return model

    def prepare_input(self, images: Tensor) -> Tensor:
        """Move an NCHW batch to the device in the matching memory format."""
        images = images.to(self.device, non_blocking=True)
        if self.channels_last and images.ndim == 4:
            images = images.contiguous(memory_format=torch.channels_last)
        return images


def resolve_runtime(
    device: str = "auto", precision: str = "auto", channels_last: str = "auto"
) -> Runtime:
    """Resolve the CLI's ``--device``, ``--precision`` and ``--channels-last`` strings.

    ``channels_last="auto"`` turns it on whenever mixed precision is used on CPU or
    CUDA, where oneDNN / cuDNN run NHWC convolutions fastest; it is off for fp32 and MPS.
    """
    resolved = resolve_device(device)
    dtype = resolve_precision(precision, resolved)
    choice = str(channels_last).strip().lower()
    if choice not in CHANNELS_LAST_CHOICES:
        raise OptionError(
            f"unknown channels-last setting {channels_last!r}; "
            f"choose one of: {', '.join(CHANNELS_LAST_CHOICES)}"
        )
    if choice == "auto":
        use = dtype is not None and resolved.type in ("cpu", "cuda")
    else:
        use = choice == "on"
    return Runtime(resolved, dtype, use)
