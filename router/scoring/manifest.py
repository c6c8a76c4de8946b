"""The model contract: output columns, the manifest beside the ``.onnx`` file,
and the feature-list check (see ``router.scoring.onnx`` for the whole contract)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Final, Literal

import msgspec

from router.features.catalogue import check_feature_names

OUTPUTS: Final[tuple[str, ...]] = ("cost_bps", "fill_prob", "markout_bps")
"""The columns of the model's output, in order."""
N_OUTPUTS: Final[int] = len(OUTPUTS)
COST_BPS: Final[int] = 0
FILL_PROB: Final[int] = 1
MARKOUT_BPS: Final[int] = 2
INPUT_NAME: Final[str] = "features"
OUTPUT_NAME: Final[str] = "scores"
MANIFEST_FORMAT: Final[int] = 1

LoadReason = Literal["missing", "corrupt", "invalid"]


class ModelLoadError(Exception):
    """The model cannot be used; the daemon routes by the static waterfall.

    ``reason`` is "missing", "corrupt" or "invalid" (the label of the fallback
    counter); ``str(exc)`` says what and where.
    """

    def __init__(self, reason: LoadReason, message: str) -> None:
        super().__init__(message)
        self.reason: LoadReason = reason


class ModelManifest(msgspec.Struct, frozen=True, kw_only=True):
    """What the exporter records next to ``model.onnx`` as ``model.json``."""

    format: int = MANIFEST_FORMAT
    version: str
    model_file: str
    """The ONNX file's name, relative to the manifest's directory."""
    sha256: str
    """Hex sha256 of the ONNX file's bytes."""
    features: list[str]
    """The input columns, in order: must equal ``router.features.FEATURE_NAMES``."""
    input: str = INPUT_NAME
    output: str = OUTPUT_NAME
    outputs: list[str] = msgspec.field(default_factory=lambda: list(OUTPUTS))
    created_utc: str = ""
    training: dict[str, Any] = {}
    validation: dict[str, Any] = {}
    parent: str = ""
    """The version this model was trained to replace (the registry's
    champion when it was added); "" for a first model."""


def manifest_path(model_path: str | os.PathLike[str]) -> Path:
    """Where the manifest of ``model_path`` lives: the same path with ``.json``."""
    return Path(model_path).with_suffix(".json")


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file's bytes (what the manifest's ``sha256`` holds)."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def read_manifest(path: str | os.PathLike[str]) -> ModelManifest:
    """Decode a manifest; ModelLoadError "missing" or "invalid" if it cannot be read."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise ModelLoadError("missing", f"model manifest {p} not found") from None
    except OSError as exc:
        raise ModelLoadError("missing", f"model manifest {p} cannot be read: {exc}") from exc
    try:
        return msgspec.json.decode(data, type=ModelManifest)
    except msgspec.DecodeError as exc:  # ValidationError is a DecodeError
        raise ModelLoadError("invalid", f"model manifest {p} is not a valid manifest: {exc}") from exc


def write_manifest(path: str | os.PathLike[str], manifest: ModelManifest) -> None:
    """Write a manifest as indented JSON, atomically (a temp file renamed over ``path``)."""
    p = Path(path)
    text = msgspec.json.format(msgspec.json.encode(manifest), indent=2) + b"\n"
    tmp = p.with_name(f".{p.name}.tmp{os.getpid()}")
    try:
        tmp.write_bytes(text)
        os.replace(tmp, p)
    finally:
        tmp.unlink(missing_ok=True)


def check_features(features: list[str] | tuple[str, ...]) -> None:
    """Raise FeatureMismatchError unless ``features`` is exactly ``FEATURE_NAMES``."""
    check_feature_names(features, "model", "model manifest",
                        "Retrain/export the model against this router's features.")
