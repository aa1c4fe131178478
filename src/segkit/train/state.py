"""The resume state of a run: tensors in safetensors, everything else in JSON, never pickled.

``state/resume.json`` names the tensor file it belongs to (``resume-<step>.safetensors``,
with its SHA-256). The tensors are written first under a new name, then the JSON is
replaced atomically, then older tensor files are deleted: a kill or a failed write at
any moment leaves a complete, matching previous state.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
from torch import Tensor, nn

from segkit._io import atomic_write_bytes, atomic_write_json, sha256_bytes, sha256_file
from segkit.errors import StateError

STATE_DIR = "state"
STATE_FILE = "resume.json"
FORMAT = "segkit-resume"
SCHEMA_VERSION = 1


def flatten_optimizer(state: dict[str, Any]) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Split ``optimizer.state_dict()`` into tensors and a JSON-ready rest."""
    tensors: dict[str, Tensor] = {}
    plain: dict[str, dict[str, Any]] = {}
    for param_id, values in state["state"].items():
        entry: dict[str, Any] = {}
        for key, value in values.items():
            if isinstance(value, Tensor):
                tensors[f"optimizer.{param_id}.{key}"] = value
                entry[key] = None
            else:
                entry[key] = value
        plain[str(param_id)] = entry
    return tensors, {"state": plain, "param_groups": state["param_groups"]}


def unflatten_optimizer(tensors: dict[str, Tensor], plain: dict[str, Any]) -> dict[str, Any]:
    """The inverse of :func:`flatten_optimizer`."""
    state: dict[int, dict[str, Any]] = {}
    for param_id, values in plain["state"].items():
        state[int(param_id)] = {
            key: tensors[f"optimizer.{param_id}.{key}"] if value is None else value
            for key, value in values.items()
        }
    return {"state": state, "param_groups": plain["param_groups"]}


def rng_tensors() -> dict[str, Tensor]:
    """The torch generators of this process (CPU and every CUDA device)."""
    states = {"rng.cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for index, state in enumerate(torch.cuda.get_rng_state_all()):
            states[f"rng.cuda.{index}"] = state
    return states


def restore_rng(tensors: dict[str, Tensor]) -> None:
    """Set the generators saved by :func:`rng_tensors` (CUDA ones only where present)."""
    torch.set_rng_state(tensors["rng.cpu"])
    cuda = sorted(key for key in tensors if key.startswith("rng.cuda."))
    if cuda and torch.cuda.is_available():
        states = [tensors[key] for key in cuda][: torch.cuda.device_count()]
        torch.cuda.set_rng_state_all(states)


def save_state(
    run: Path,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler | None,
    progress: dict[str, Any],
) -> Path:
    """Write the resume state of ``run``; returns the JSON path. ``progress`` is JSON."""
    folder = Path(run) / STATE_DIR
    optimizer_tensors, optimizer_plain = flatten_optimizer(optimizer.state_dict())
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    tensors.update(optimizer_tensors)
    tensors.update(rng_tensors())
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    data = safetensors.torch.save(tensors, metadata={"format": FORMAT})
    name = f"resume-{int(progress.get('global_step', 0)):09d}.safetensors"
    atomic_write_bytes(folder / name, data)
    info = {
        "format": FORMAT,
        "schema_version": SCHEMA_VERSION,
        "tensors": name,
        "tensors_sha256": sha256_bytes(data),
        "optimizer": optimizer_plain,
        "scaler": None if scaler is None else scaler.state_dict(),
        "progress": progress,
    }
    path = folder / STATE_FILE
    atomic_write_json(path, info)
    for old in folder.glob("resume-*.safetensors"):
        if old.name != name:
            old.unlink(missing_ok=True)
    return path


@dataclass(frozen=True)
class ResumeState:
    """A loaded state: call :meth:`apply` to restore model, optimizer, scaler and RNGs."""

    tensors: dict[str, Tensor]
    info: dict[str, Any]

    @property
    def progress(self) -> dict[str, Any]:
        """The JSON ``progress`` saved with the state (epoch, step, history, …)."""
        return self.info["progress"]

    def apply(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        scaler: torch.amp.GradScaler | None,
    ) -> None:
        """Load everything into the freshly built objects of the resumed run."""
        prefix = "model."
        model.load_state_dict(
            {k[len(prefix) :]: v for k, v in self.tensors.items() if k.startswith(prefix)}
        )
        optimizer.load_state_dict(unflatten_optimizer(self.tensors, self.info["optimizer"]))
        if scaler is not None and self.info.get("scaler"):
            scaler.load_state_dict(self.info["scaler"])
        restore_rng(self.tensors)


def has_state(run: Path) -> bool:
    """Whether ``run`` holds a resume state."""
    return (Path(run) / STATE_DIR / STATE_FILE).is_file()


def load_state(run: Path) -> ResumeState:
    """Read and check the resume state of ``run``; ``StateError`` names the problem."""
    folder = Path(run) / STATE_DIR
    path = folder / STATE_FILE
    if not path.is_file():
        raise StateError(f"{path}: no resume state; the run never finished a save")
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
        tensors_path = folder / str(info["tensors"])
        if info.get("format") != FORMAT or info["schema_version"] > SCHEMA_VERSION:
            raise StateError(f"{path}: not a resume state this segkit understands")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as error:
        raise StateError(f"{path}: damaged resume state ({error})") from error
    if not tensors_path.is_file() or sha256_file(tensors_path) != info.get("tensors_sha256"):
        raise StateError(f"{tensors_path}: missing or does not match {path}")
    tensors = safetensors.torch.load_file(str(tensors_path), device="cpu")
    return ResumeState(tensors, info)
