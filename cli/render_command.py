"""`filterviz render`, `layers` and `weights fetch`: the commands that run here, without any service."""

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

from cli.arguments import UsageError, spec_from_args
from shared.layers import conv_layers
from shared.settings import Settings


def progress_reporter(total: int) -> tuple[Callable[[int], None], Callable[[], None]]:
    """A progress bar on a terminal, plain lines otherwise; returns (advance, close)."""
    if sys.stderr.isatty():
        from tqdm import tqdm

        bar = tqdm(total=total, unit="filter", desc="rendering", dynamic_ncols=True)

        def advance_bar(count: int) -> None:
            bar.update(count)  # its answer (whether it redrew) is of no use here

        return advance_bar, bar.close
    started = time.perf_counter()
    done = 0

    def advance(count: int) -> None:
        nonlocal done
        done += count
        rate = done / max(time.perf_counter() - started, 1e-9)
        eta = (total - done) / rate if rate else 0.0
        print(f"rendered {done}/{total} filters, {rate:.2f} filters/s, ETA {eta:.0f}s", file=sys.stderr, flush=True)

    return advance, lambda: None


def run_render(args: argparse.Namespace, settings: Settings) -> int:
    """Validate everything, load the weights, then render and write the folder."""
    spec = spec_from_args(args, settings)
    if args.batch_size is not None and args.batch_size < 1:
        raise UsageError(f"batch-size: must be at least 1, got {args.batch_size}")
    if args.out.exists() and not args.out.is_dir():
        raise UsageError(f"out: {args.out} exists and is not a folder")

    if (args.weights or settings.weights) == "imagenet":
        fetch_imagenet_weights(settings, spec.model)  # where it is missing; before TensorFlow, so offline fails fast
    # TensorFlow is imported only once the arguments are known to be good: errors come fast.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's start-up chatter off the terminal
    from worker.loading import load_engine, pick_batch_size
    from worker.model import WeightsError
    from worker.render import render, write_folder

    try:
        loaded = load_engine(args.weights or settings.weights, settings, spec.model)
    except WeightsError as error:
        raise UsageError(f"weights: {error}") from None
    batch_size = args.batch_size or pick_batch_size(spec, len(spec.filters), settings)
    advance, close = progress_reporter(len(spec.filters))
    try:
        rendering = render(loaded.engine, spec, loaded.weights, batch_size=batch_size, on_progress=advance)
    finally:
        close()
    manifest = write_folder(rendering, args.out, loaded.runtime)
    alive = sum(not entry["dead"] for entry in manifest["filters"])
    print(
        f"wrote {args.out}/grid.png ({len(rendering.order)} of {alive} live filters), "
        f"{len(spec.filters)} filter pictures and manifest.json; weights {loaded.weights}"
    )
    return 0


def fetch_imagenet_weights(settings: Settings, model: str) -> Path:
    """A model's ImageNet file, downloaded where it is missing (never another file instead); UsageError
    if that fails."""
    from worker.weights_fetch import WeightsFetchError, ensure_imagenet_weights

    try:
        return ensure_imagenet_weights(settings.imagenet_weights, settings.weights_url, settings.weights_hash, model)[0]
    except WeightsFetchError as error:
        raise UsageError(f"weights: {error}") from None


def list_layers(model: str) -> int:
    """Print each layer of `model` shown, with its filter count."""
    layers = conv_layers(model)
    width = max(len(layer.name) for layer in layers)
    for layer in layers:
        print(f"{layer.name:<{width}} {layer.filters:>4} filters  (image_size >= {layer.min_image_size})")
    return 0
