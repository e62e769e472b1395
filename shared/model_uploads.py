"""Whole Keras models a user uploads (`model.save("mine.keras")`): what is taken, what is refused and
why, and the layer table read from the model's own config, so the API validates and prices its jobs
without TensorFlow.

A `.keras` file is a zip of config.json (the layers, as JSON), metadata.json and model.weights.h5. It
is read as data here: no member but those three, no path outside the archive, no Lambda layer and no
object from outside Keras (a custom layer's code would have to run on the workers), float weights
only, RGB input at a saved size, and at least one convolution in the model's own graph (a model nested
in it as one layer is not looked into). Workers then load it with Keras' `safe_mode`, which refuses
the same.

Stored content-addressed beside uploaded weights (shared/uploads.py): models/<sha256>.keras and a
record whose `table` holds the layers shown (each convolution, with its channels and downsampling) and
the convolutions the cost model counts. Jobs name it as their `model`: `upload:<sha256>`; its identity
in manifests and cache keys is `file:<sha256>`.
"""

import hashlib
import io
import json
import math
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from shared.layers import ConvLayer, Convolution, ModelTable, convolution_macs
from shared.models import Preprocessing
from shared.uploads import (
    UPLOAD_ID,
    UPLOAD_PREFIX,
    ZIP_SIGNATURE,
    UploadRefused,
    float_count,
    record_key,
    refuse_unsafe_member,
    upload_id,
    upload_sha256,
)

MEMBERS = ("config.json", "metadata.json", "model.weights.h5")
CONFIG_BYTES = 2**20
CONVOLUTIONS = ("Conv2D", "SeparableConv2D", "DepthwiseConv2D")
# Layers whose code is in the file (Python bytecode), not in Keras.
LAMBDAS = ("Lambda", "__lambda__", "TFOpLambda")
RGB = 3


@dataclass(frozen=True)
class InspectedModel:
    """An upload found to be a Keras CNN: its table and its saved input side."""

    table: ModelTable
    input_side: int


def model_key(sha256: str) -> str:
    """Where the uploaded model file lives in the bucket."""
    return f"{UPLOAD_PREFIX}{sha256}.keras"


def is_keras_archive(data: bytes) -> bool:
    """Whether the upload is a zip (what a `.keras` file is)."""
    return data.startswith(ZIP_SIGNATURE)


def inspect_model(data: bytes, preprocessing: Preprocessing, max_bytes: int, max_filters: int) -> InspectedModel:
    """`data` as a whole Keras model, or UploadRefused saying why not."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        raise UploadRefused("a broken zip archive") from None
    members = {member.filename: member for member in archive.infolist()}
    for name in members:
        refuse_unsafe_member(name)
        if name not in MEMBERS:
            known = ", ".join(MEMBERS)
            raise UploadRefused(f"the archive's member {name[:200]!r} is not part of a Keras model ({known})")
    if "config.json" not in members or "model.weights.h5" not in members:
        raise UploadRefused("not a Keras model: a .keras archive holds config.json and model.weights.h5")
    # Sizes as the archive declares them: reading stops there, so a zip bomb expands no further.
    if members["config.json"].file_size > CONFIG_BYTES:
        raise UploadRefused(f"config.json is over {CONFIG_BYTES // 2**20} MB")
    if members["model.weights.h5"].file_size > max_bytes:
        raise UploadRefused(f"the weights unpack to over {max_bytes // 2**20} MB (FILTERVIZ_MODEL_UPLOAD_MB)")
    try:
        config = json.loads(archive.read("config.json"))
    except (ValueError, zipfile.BadZipFile, RecursionError) as error:  # RecursionError: nested past Python's stack
        raise UploadRefused(f"config.json can't be read: {str(error)[:200]}") from None
    _refuse_code(config)
    weights = archive.read("model.weights.h5")
    try:
        table, side = _table(config, preprocessing, float_count(weights), max_filters)
    except UploadRefused:
        raise
    except (KeyError, TypeError, AttributeError, ValueError):  # hand-made JSON, not what Keras writes
        raise UploadRefused("config.json is not a Keras model's config") from None
    return InspectedModel(table, side)


def _objects(value: Any) -> Iterator[dict]:
    """Every serialized object in a config, however deep: dicts naming a class (walked with a list, not
    recursion, so no nesting overflows the stack)."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, dict):
            if "class_name" in item:
                yield item
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)


def _refuse_code(config: Any) -> None:
    """UploadRefused where the config names code that would run on loading: a Lambda layer, or a class
    from outside Keras (a custom object, whose module the workers would have to import)."""
    for found in _objects(config):
        name, module = str(found["class_name"])[:100], found.get("module")
        if name in LAMBDAS:
            raise UploadRefused(f"the model has a {name} layer: its code would run on the workers")
        registered = found.get("registered_name")
        custom = isinstance(registered, str) and ">" in registered
        if custom or (module is not None and not re.fullmatch(r"keras(\..+)?", str(module))):
            raise UploadRefused(
                f"{name} is a custom object ({str(registered or module)[:100]}): only Keras' own layers are taken, "
                "as their code would have to run on the workers"
            )


def _table(config: Any, preprocessing: Preprocessing, parameters: int, max_filters: int) -> tuple[ModelTable, int]:
    """The model's layers shown (its own graph's convolutions) and convolutions, as a built network's table,
    and its saved input side."""
    if not isinstance(config, dict) or config.get("class_name") not in ("Functional", "Sequential"):
        raise UploadRefused("not a Keras functional or Sequential model")
    layers = [layer for layer in config.get("config", {}).get("layers", []) if isinstance(layer, dict)]
    inputs = [layer for layer in layers if layer.get("class_name") == "InputLayer"]
    if len(inputs) != 1:
        raise UploadRefused(f"the model takes {len(inputs)} inputs: filterviz paints one image")
    shape = inputs[0].get("config", {}).get("batch_shape")
    if not _is_image_shape(shape):
        raise UploadRefused(
            f"the model's input is {shape}: save it for images of a fixed size, e.g. keras.Input((224, 224, 3))"
        )
    if shape[3] != RGB:
        raise UploadRefused(f"the model takes {shape[3]} channels: filterviz paints RGB images (3)")
    side = min(shape[1], shape[2])
    shown, convolutions, valid = [], [], False
    for layer in layers:
        if _is_pixelwise_dense(layer):  # a 1x1 convolution, on every pixel (ConvNeXt's): counted, not shown
            built, units = layer["build_config"]["input_shape"], int(layer["config"]["units"])
            downsampling = 2 ** round(math.log2(side / built[1]))
            convolutions.append(Convolution(downsampling, built[3] * units, units))
        if layer.get("class_name") not in CONVOLUTIONS:
            continue
        convolution, pads = _convolution(layer, side)
        valid = valid or pads
        convolutions.append(convolution)
        if convolution.channels > max_filters:
            raise UploadRefused(f"layer {layer['name']!r} has {convolution.channels} channels; at most {max_filters}")
        shown.append((str(layer["config"]["name"]), convolution, len(convolutions)))
    if not shown:
        raise UploadRefused("the model has no convolution layer (Conv2D, SeparableConv2D or DepthwiseConv2D) in its "
                            "own graph: filterviz shows convolution filters")  # fmt: skip
    # Valid padding shrinks as it goes: below the saved side a layer might come out empty.
    min_input = side if valid else 1
    table = ModelTable(
        tuple(
            ConvLayer(name, conv.channels, conv.downsampling, up_to, max(conv.downsampling, min_input))
            for name, conv, up_to in shown
        ),
        tuple(convolutions),
        parameters,
        preprocessing,
    )
    return table, side


def _is_pixelwise_dense(layer: dict) -> bool:
    built = (layer.get("build_config") or {}).get("input_shape")
    return (
        layer.get("class_name") == "Dense"
        and _is_image_shape(built)
        and isinstance(layer.get("config", {}).get("units"), int)
    )


def _is_image_shape(shape: Any) -> bool:
    return isinstance(shape, list) and len(shape) == 4 and all(isinstance(n, int) and n > 0 for n in shape[1:])


def _convolution(layer: dict, side: int) -> tuple[Convolution, bool]:
    """A convolution layer as the cost model counts it, from its config and the input shape it was built
    for; and whether its padding is `valid` with a window wider than one pixel."""
    config = layer.get("config", {})
    built: Any = (layer.get("build_config") or {}).get("input_shape")
    name = str(config.get("name"))[:100]
    if not _is_image_shape(built):
        raise UploadRefused(f"layer {name!r} was saved unbuilt or for no fixed size ({built}): build the model first")
    if config.get("data_format", "channels_last") != "channels_last":
        raise UploadRefused(f"layer {name!r} is channels_first: filterviz takes channels_last models")
    try:
        (kernel, _), (stride, _), (dilation, _) = config["kernel_size"], config["strides"], config["dilation_rate"]
        channels_in, multiplier = built[3], int(config.get("depth_multiplier", 1))
        kind = layer["class_name"]
        channels = channels_in * multiplier if kind == "DepthwiseConv2D" else int(config["filters"])
        reach = dilation * (kernel - 1)
        out = math.ceil(built[1] / stride) if config["padding"] == "same" else (built[1] - reach - 1) // stride + 1
        macs = convolution_macs(kind, kernel * config["kernel_size"][1], channels_in, channels, multiplier,
                                int(config.get("groups", 1)))  # fmt: skip
    except (KeyError, TypeError, ValueError):
        raise UploadRefused(f"layer {name!r} has a config Keras would not write") from None
    downsampling = 2 ** round(math.log2(side / max(1, out)))
    return Convolution(downsampling, macs, channels), config["padding"] == "valid" and reach > 0


def table_json(table: ModelTable) -> dict:
    """The table as a record keeps it."""
    return {
        "layers": [{"name": layer.name, "filters": layer.filters, "downsampling": layer.downsampling,
                    "convolutions": layer.convolutions, "min_image_size": layer.min_image_size}
                   for layer in table.layers],
        "convolutions": [[conv.downsampling, conv.macs_per_pixel, conv.channels] for conv in table.convolutions],
        "parameters": table.parameters,
        "preprocessing": table.preprocessing,
    }  # fmt: skip


def table_from_json(raw: dict) -> ModelTable:
    """A record's table."""
    return ModelTable(
        tuple(ConvLayer(**layer) for layer in raw["layers"]),
        tuple(Convolution(*conv) for conv in raw["convolutions"]),
        raw["parameters"],
        raw["preprocessing"],
    )


def new_model_record(data: bytes, inspected: InspectedModel, name: str | None, owner: str | None, now: str) -> dict:
    """The record of a first upload of these bytes."""
    return {"id": upload_id(hashlib.sha256(data).hexdigest()), "kind": "model", "architecture": None, "name": name,
            "owners": [owner] if owner else [], "bytes": len(data),
            "parameters": inspected.table.parameters, "input_side": inspected.input_side,
            "table": table_json(inspected.table), "created_at": now}  # fmt: skip


class UploadedTables:
    """Uploaded models' tables, as the lookup of shared/layers.py: read from their records in the bucket
    on first use and kept (an upload's table never changes; only models found are kept)."""

    def __init__(self, storage: Any, kept: int = 256) -> None:
        self._storage = storage
        self._kept = kept
        self._tables: dict[str, ModelTable] = {}

    def __call__(self, model: str) -> ModelTable | None:
        if model in self._tables:
            return self._tables[model]
        if UPLOAD_ID.fullmatch(model) is None:
            return None
        record = self._storage.get_json(record_key(upload_sha256(model)))
        if record is None or record.get("kind") != "model":
            return None
        if len(self._tables) >= self._kept:
            self._tables.pop(next(iter(self._tables)))
        self._tables[model] = table_from_json(record["table"])
        return self._tables[model]
