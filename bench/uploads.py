"""How the API reads an uploaded whole model: keras.applications networks saved whole (with their
classifier, at 224 px, seeded random weights), read by shared/model_uploads.py as the API reads them,
and checked against the network Keras loads from the same file.

Per network: the file's size, the seconds the API's reading takes, the convolutions it shows, and
whether each one's channels and downsampling agree with Keras' own output shapes; and the multiply-adds
per 224 px picture counted from the config against those of shared/model_tables.json.

    python -m bench.uploads [--models vgg16,resnet50,...]
"""

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

SIDE = 224
DEFAULT_MODELS = "resnet50,inception_v3,xception,mobilenet_v2,densenet121,efficientnetv2b0,convnext_tiny"


def measure(model: str, folder: Path) -> dict:
    import keras

    from shared.layers import model_tables
    from shared.model_uploads import inspect_model
    from shared.models import ARCHITECTURES
    from shared.spec import MAX_LAYER_FILTERS
    from worker.model import _fill_random

    architecture = ARCHITECTURES[model]
    network = getattr(keras.applications, architecture.keras_name)(weights=None, input_shape=(SIDE, SIDE, 3))
    _fill_random(network, 1)
    path = folder / f"{model}.keras"
    network.save(path)
    data = path.read_bytes()
    started = time.perf_counter()
    table = inspect_model(data, architecture.preprocessing, 2**31, MAX_LAYER_FILTERS).table
    seconds = time.perf_counter() - started
    loaded = keras.saving.load_model(path, compile=False, safe_mode=True)
    agree = sum(
        layer.filters == loaded.get_layer(layer.name).output.shape[-1]
        and layer.downsampling == 2 ** round(math.log2(SIDE / loaded.get_layer(layer.name).output.shape[1]))
        for layer in table.layers
    )
    macs = sum((SIDE // conv.downsampling) ** 2 * conv.macs_per_pixel for conv in table.convolutions)
    # The built-in table counts Dense layers on every pixel too (ConvNeXt); the networks here have none.
    built = sum((SIDE // conv.downsampling) ** 2 * conv.macs_per_pixel for conv in model_tables()[model].convolutions)
    return {"model": model, "mb": len(data) / 2**20, "seconds": seconds, "shown": len(table.layers),
            "agree": agree, "gmacs": macs / 1e9, "built_gmacs": built / 1e9}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=DEFAULT_MODELS, help="comma-separated (default %(default)s)")
    args = parser.parse_args(argv)
    print("| model | .keras | API reads it in | convolutions shown | agree with Keras | GMAC (config) | GMAC (table) |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        for model in args.models.split(","):
            row = measure(model, Path(folder))
            cells = [row["model"], f"{row['mb']:.0f} MB", f"{row['seconds']:.2f} s", row["shown"],
                     f"{row['agree']}/{row['shown']}", f"{row['gmacs']:.2f}", f"{row['built_gmacs']:.2f}"]  # fmt: skip
            print("| " + " | ".join(map(str, cells)) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
