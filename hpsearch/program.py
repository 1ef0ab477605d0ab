"""A checkpoint's model as a ``torch.export`` program (``.pt2``): scorable with no model code.

``export`` writes it beside the checkpoint: the model in eval mode, fp32, on the CPU,
traced with a dynamic batch dimension, and the checkpoint's metadata (everything but the
weights, as JSON) in the archive's extra file ``hpsearch.json``. ``hpsearch evaluate
FILE.pt2`` scores it through the same ``checkpoint.score`` as a checkpoint: the metadata
carries the normalisation, classes and task, and names the study file; only a dataset that
the study file registers (its reader is code) makes ``evaluate`` import that file, as for a
checkpoint (``checkpoint.dataset``). A program of a packaged dataset runs no study code.

Safe to load: ``torch.export.load`` unpickles a payload that its archive marks as pickled
(weights, constants, custom objects), and falls back to a full unpickle for sample inputs
that are not plain tensors. ``load`` refuses such an archive before torch reads it, so no
code in a ``.pt2`` runs.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hpsearch.atomic import replacing
from hpsearch.errors import UsageError, first_line

EXTRA = "hpsearch.json"
# Constant payloads torch.export stores as plain tensors; custom and opaque objects are pickles.
TENSOR_CONSTANT_PREFIX = "tensor_"


def write(model: nn.Module, checkpoint: dict[str, Any], example: torch.Tensor, path: Path) -> Path:
    """Export ``model`` (eval mode, fp32, CPU) for inputs shaped like ``example`` with any
    batch size, with ``checkpoint``'s metadata; atomically, to ``path``."""
    model = model.float().cpu().eval()
    program = torch.export.export(model, (example.float().cpu(),), dynamic_shapes=({0: torch.export.Dim.DYNAMIC},))
    meta = {k: v for k, v in checkpoint.items() if k != "state_dict"}
    buffer = io.BytesIO()  # torch.export.save wants a name ending in .pt2, or a buffer
    torch.export.save(program, buffer, extra_files={EXTRA: json.dumps(meta)})
    with replacing(Path(path)) as tmp:
        Path(tmp).write_bytes(buffer.getvalue())
    return Path(path)


def load(path: Path) -> tuple[nn.Module, dict[str, Any]]:
    """The program's module and its metadata. Raises UsageError (one line) for a missing or
    foreign file, or an archive holding pickled payloads."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{path}: no such program file; 'hpsearch export' writes one beside each checkpoint")
    _refuse_pickles(path)
    extra = {EXTRA: ""}
    try:
        program = torch.export.load(path, extra_files=extra)
        meta = json.loads(extra[EXTRA])
    except Exception as exc:
        why = first_line(exc)
        raise UsageError(f"{path} is no program written by 'hpsearch export' ({why}); export it again") from None
    if not meta:
        raise UsageError(f"{path} is a torch.export program without hpsearch's metadata; export it with hpsearch")
    return program.module(), meta


def _refuse_pickles(path: Path) -> None:
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            configs = [n for n in names if n.endswith(("_weights_config.json", "_constants_config.json"))]
            entries = [e for n in configs for e in json.loads(archive.read(n)).get("config", {}).values()]
            samples = [n for n in names if "/data/sample_inputs/" in n]
            for name in samples:  # torch would fall back to a full unpickle where these are not tensors
                with archive.open(name) as f:
                    torch.load(f, map_location="cpu", weights_only=True)
    except UsageError:
        raise
    except Exception as exc:
        raise UsageError(f"{path} is no torch.export program hpsearch can read safely ({first_line(exc)})") from None
    if not configs:
        raise UsageError(f"{path} is not a torch.export program (no weights in its archive)")
    pickled = [e.get("path_name") for e in entries if e.get("use_pickle") or not _tensor_payload(e.get("path_name"))]
    if pickled:
        raise UsageError(
            f"{path} refused: it holds pickled payloads ({', '.join(map(str, pickled[:3]))}), which hpsearch never "
            "loads; export it again"
        )


def _tensor_payload(name: Any) -> bool:
    return isinstance(name, str) and (name.startswith("weight_") or name.startswith(TENSOR_CONSTANT_PREFIX))
