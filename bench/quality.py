"""Picture quality per method, measured rather than judged by eye (its sources: README, Methods).

Every method renders the same filters at an equal compute budget (network passes per filter: a
method that looks at several crops per step gets fewer steps). Each shown picture (the uint8
PNG a user gets) is then measured:

  alive   share of filters whose channel is above zero (after its ReLU) on the picture
  z       the objective on the picture (by default the filter's mean pre-ReLU activation), as a
          z-score against its values on noise pictures made of the picture's own pixels, shuffled
          (seeded): same colours and contrast, no structure, so contrast alone scores 0 (median
          over filters)
  rho     robustness: the median over small random shifts, zooms and rotations of the picture of
          (a(T x) - mean_noise) / (a(x) - mean_noise); 1 = unchanged, 0 = back to noise level
  hf      share of the luminance power spectrum above 0.25 cycles/px (Hann window, mean removed)
  slope   log-log slope of the radial power spectrum over [2/N, 0.25] cycles/px (natural images ~ -2)
  s/filt  seconds of ascent per filter on this machine

`--objective` measures another objective (shared/objectives.py, as the CLI writes it; a diversity
term is left out of the measure). `--diversity N` adds the diversity figure: per filter, the mean
pairwise distance between its N pictures in the network's own features (1 - the cosine similarity
of their Gram matrices on the layer, Lucid's diversity measure; median over filters), for N
pictures from N independent seeds against N pictures rendered together under a diversity term.

With seeded random weights the numbers only compare methods with each other: a random network
has no natural-image features to find. Run it on ImageNet weights for absolute meaning.

    python bench/quality.py                                   # random:1, block3_conv1 and block5_conv1, 64 px
    python bench/quality.py --size 128 --filters 64 --weights imagenet --out /tmp/quality
    python bench/quality.py --precision bfloat16    # pictures rendered in bf16, measured in float32
    python bench/quality.py --methods fourier,maco --objective neuron:x=0.3,y=0.3 --diversity 4
    python bench/quality.py --model mobilenet_v2 --layers logits --methods fourier,maco --objective class:class=flamingo
"""

import argparse
import math
import os
import time
from dataclasses import dataclass

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
from keras import ops

from shared.methods import METHODS, SEED
from shared.models import ARCHITECTURES, DEFAULT_MODEL, seed_preprocessing
from shared.objectives import DEFAULT_OBJECTIVE, DIVERSITY, parse_term
from shared.pictures import encode_png, stitch_grid
from shared.settings import Settings
from shared.spec import parse_spec
from worker.engine import AscentEngine
from worker.engine.network import cut_at, pre_activation, preprocess
from worker.engine.objectives import Rows, objective_values
from worker.engine.precision import FLOAT32, PRECISIONS
from worker.engine.tf_step import compiled
from worker.imaging import picture
from worker.loading import load_engine

NOISE_PICTURES = 8  # shuffles of each picture
TRANSFORMS = 16
HIGH_FREQUENCY = 0.25  # cycles per pixel
# Lucid's standard ranges, the shift scaled with the picture (8 px at 128 px).
SHIFT_FRACTION, ZOOM, ROTATION_DEGREES = 1 / 16, 0.1, 10.0


@dataclass
class Scores:
    """One method's measurements on one layer."""

    alive: float
    z: float
    rho: float
    hf: float
    slope: float
    seconds_per_filter: float


def spectrum_scores(pictures: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """High-frequency power share and log-log spectral slope of each picture's luminance."""
    size = pictures.shape[1]
    luminance = pictures.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    luminance -= luminance.mean(axis=(1, 2), keepdims=True)
    window = np.outer(np.hanning(size), np.hanning(size))
    power = np.abs(np.fft.fft2(luminance * window)) ** 2
    fy, fx = np.meshgrid(np.fft.fftfreq(size), np.fft.fftfreq(size), indexing="ij")
    radius = np.sqrt(fx**2 + fy**2)
    nonzero = radius > 0
    hf = power[:, radius > HIGH_FREQUENCY].sum(axis=1) / np.maximum(power[:, nonzero].sum(axis=1), 1e-12)
    # Radial average over integer-radius rings, fitted where 2/N <= f <= 0.25.
    rings = np.rint(radius * size).astype(int)
    fitted = np.arange(2, int(HIGH_FREQUENCY * size) + 1)
    slopes = []
    for p in power:
        means = np.array([p[rings == r].mean() for r in fitted])
        slopes.append(np.polyfit(np.log(fitted / size), np.log(np.maximum(means, 1e-12)), 1)[0])
    return hf, np.array(slopes)


def random_transforms(count: int, size: int, seed: int) -> np.ndarray:
    """`count` affine transforms (keras.ops.image.affine_transform's 8 numbers): shift, zoom and rotation."""
    rng = np.random.default_rng(seed)
    rows = []
    c = (size - 1) / 2
    for _ in range(count):
        shift = rng.uniform(-1, 1, 2) * SHIFT_FRACTION * size
        zoom = 1 + rng.uniform(-ZOOM, ZOOM)
        angle = math.radians(rng.uniform(-ROTATION_DEGREES, ROTATION_DEGREES))
        cos, sin = math.cos(angle) / zoom, math.sin(angle) / zoom
        a = np.array([[cos, sin], [-sin, cos]])
        offset = c - a @ (np.array([c, c]) + shift)
        rows.append([a[0, 0], a[0, 1], offset[0], a[1, 0], a[1, 1], offset[1], 0, 0])
    return np.array(rows, np.float32)


class Meter:
    """An objective on one layer's pre-ReLU activations, as each method feeds its network."""

    def __init__(self, engine: AscentEngine, layer: str, size: int, seed: int, terms: list = DEFAULT_OBJECTIVE) -> None:
        cut = cut_at(engine.network, layer)
        self._preprocessing = {
            SEED: seed_preprocessing(engine.model, ARCHITECTURES[engine.model].preprocessing),
            "other": ARCHITECTURES[engine.model].preprocessing,
        }
        measured = [term for term in terms if term["kind"] != DIVERSITY]
        self._values = compiled(
            lambda x, f: objective_values(pre_activation(cut, x, ops.relu), Rows.one_each(f), measured)
        )
        self._peak = compiled(lambda x: ops.max(ops.relu(pre_activation(cut, x, ops.relu)), axis=(1, 2)))
        # Minus a picture's mean Gram similarity with its filter's other pictures, after the ReLU.
        apart = [{"kind": DIVERSITY, "weight": 1.0}]
        self._apart = compiled(
            lambda x, f, p: objective_values(ops.relu(pre_activation(cut, x, ops.relu)), Rows(f, p), apart)
        )
        self.seed = seed
        self.transforms = random_transforms(TRANSFORMS, size, seed)

    def network_input(self, method: str, pictures: np.ndarray) -> object:
        x = ops.convert_to_tensor(pictures.astype(np.float32))
        return preprocess(self._preprocessing[SEED if method == SEED else "other"], x)

    def values(self, method: str, pictures: np.ndarray, filters: np.ndarray) -> np.ndarray:
        """The objective on each picture, for its filter."""
        return np.asarray(self._values(self.network_input(method, pictures), ops.convert_to_tensor(filters, "int32")))

    def distance(self, method: str, pictures: np.ndarray) -> float:
        """(filters, n, ...) pictures -> the median over filters of their pictures' mean pairwise distance."""
        count, n = pictures.shape[:2]
        filters, own = (
            ops.convert_to_tensor(ids, "int32") for ids in (np.repeat(np.arange(count), n), np.arange(count * n))
        )
        apart = np.asarray(
            self._apart(self.network_input(method, pictures.reshape(-1, *pictures.shape[2:])), filters, own)
        )
        return float(np.median(1 + apart.reshape(count, n).mean(axis=1)))

    def fires(self, method: str, pictures: np.ndarray, filters: list[int]) -> np.ndarray:
        peaks = np.asarray(self._peak(self.network_input(method, pictures)))
        return peaks[np.arange(len(filters)), filters] > 0

    def shuffled(self, pictures: np.ndarray) -> np.ndarray:
        """NOISE_PICTURES copies of each picture with its pixels shuffled: (pictures * NOISE_PICTURES, ...)."""
        rng = np.random.default_rng(self.seed)
        flat = pictures.reshape(len(pictures), -1, 3)
        copies = [flat[i, rng.permutation(flat.shape[1])] for i in range(len(pictures)) for _ in range(NOISE_PICTURES)]
        return np.stack(copies).reshape(-1, *pictures.shape[1:])

    def transformed(self, pictures: np.ndarray) -> np.ndarray:
        """Every picture under every transform: (pictures * TRANSFORMS, ...), reflected at the edges."""
        copies = np.repeat(pictures.astype(np.float32), len(self.transforms), axis=0)
        rows = np.tile(self.transforms, (len(pictures), 1))
        moved = ops.image.affine_transform(copies, rows, fill_mode="reflect")
        return np.clip(np.rint(np.asarray(moved)), 0, 255).astype(np.uint8)


def measure(method: str, pictures: np.ndarray, filters: list[int], meter: Meter) -> tuple[float, float, float]:
    """alive share, median z and median robustness of one method's pictures."""
    filters_of = np.asarray(filters)
    noise = meter.values(method, meter.shuffled(pictures), np.repeat(filters_of, NOISE_PICTURES))
    noise = noise.reshape(len(filters), NOISE_PICTURES)
    mu, sigma = noise.mean(axis=1), noise.std(axis=1) + 1e-6
    own = meter.values(method, pictures, filters_of)
    moved = meter.values(method, meter.transformed(pictures), np.repeat(filters_of, TRANSFORMS))
    moved = moved.reshape(len(filters), TRANSFORMS)
    above = own - mu
    # Robustness only means something where the picture beats noise.
    usable = above > 0
    rho = np.median((moved[usable] - mu[usable, None]) / above[usable, None], axis=1) if usable.any() else [np.nan]
    alive = meter.fires(method, pictures, filters).mean()
    return float(alive), float(np.median(above / sigma)), float(np.median(rho))


def render_pictures(
    engine: AscentEngine,
    method: str,
    layer: str,
    filters: list[int],
    size: int,
    budget: int,
    batch: int,
    terms: list = DEFAULT_OBJECTIVE,
    seed: int = 1,
) -> tuple[np.ndarray, float]:
    """The method's shown pictures of `filters` at `budget` network passes per filter, and seconds taken:
    (filters, size, size, 3), or (filters, n, size, size, 3) under a diversity term."""
    spec = METHODS[method]
    params = spec.resolve(None)
    steps = max(1, budget // spec.images_per_filter(params))

    def run(steps: int) -> list:
        return engine.ascend(
            layer, filters, image_size=size, steps=steps, step_size=spec.step_size, seed=seed, batch_size=batch,
            method=method, method_params=params, objective=terms,
        )  # fmt: skip

    run(1)  # compiles every shape the timed run uses (multiscale's octaves apart)
    started = time.perf_counter()
    results = run(steps)
    seconds = time.perf_counter() - started
    shown = np.stack([picture(method, params, r.image) for r in results])
    n = shown.shape[2] // size
    return (shown if n == 1 else shown.reshape(len(filters), size, n, size, 3).transpose(0, 2, 1, 3, 4)), seconds


def print_diversity(engine: AscentEngine, meter: Meter, method: str, layer: str, args: argparse.Namespace,
                    terms: list) -> None:  # fmt: skip
    """The diversity figure: N independent seeds against N pictures pushed apart, on the same filters."""
    filters, n = list(range(args.filters)), args.diversity
    alone = [t for t in terms if t["kind"] != DIVERSITY]

    def render(objective: list, seed: int = 1) -> np.ndarray:
        return render_pictures(
            engine, method, layer, filters, args.size, args.budget, args.batch_size, objective, seed
        )[0]  # fmt: skip

    seeds = np.stack([render(alone, seed) for seed in range(1, n + 1)], 1)
    pushed = render([*alone, {"kind": DIVERSITY, "weight": 1e2, "n": n}])
    for name, pictures in (("independent seeds", seeds), ("diversity term", pushed)):
        _, z, _ = measure(method, pictures.reshape(-1, *pictures.shape[2:]), list(np.repeat(filters, n)), meter)
        print(f"  {method:<11} {name:<18} distance {meter.distance(method, pictures):.3f}   z {z:8.1f}")


def print_targets(scores: dict[str, Scores]) -> None:
    """Issue 12's targets for each method against `seed`'s numbers."""
    base = scores[SEED]
    for method, s in scores.items():
        if method == SEED:
            continue
        rho_ratio = s.rho / base.rho if base.rho > 0 else math.inf
        print(
            f"  {method}: alive >= 99% {'yes' if s.alive >= 0.99 else 'NO'}; "
            f"hf / seed's {s.hf / base.hf:.2f} (target <= 0.5); rho / seed's {rho_ratio:.2f} (target >= 2)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", default="random:1", help="imagenet, random:<seed> or a weights file")
    parser.add_argument("--model", default=DEFAULT_MODEL, choices=list(ARCHITECTURES))
    parser.add_argument("--layers", default="block3_conv1,block5_conv1")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--filters", type=int, default=12, help="filters 0..N-1 of each layer")
    parser.add_argument("--budget", type=int, default=64, help="network passes per filter (steps x crops)")
    parser.add_argument("--batch-size", type=int, default=48, help="images per step")
    parser.add_argument("--out", help="write each method's grid of pictures here")
    parser.add_argument("--precision", default=FLOAT32, choices=PRECISIONS, help="what the pictures are rendered in")
    parser.add_argument("--objective", action="append", type=parse_term, help="a term, as the CLI's (repeat to sum)")
    parser.add_argument("--diversity", type=int, default=0, help="N: the diversity figure with N pictures a filter")
    args = parser.parse_args()

    # The meter's network is float32 whatever the pictures were rendered in (a layer keeps the dtype
    # policy it was built under), so precisions are scored alike.
    measuring = load_engine(args.weights, Settings(precision=FLOAT32), args.model)
    loaded = (
        load_engine(args.weights, Settings(precision=args.precision), args.model)
        if args.precision != FLOAT32
        else measuring
    )
    methods = args.methods.split(",")
    filters = list(range(args.filters))
    print(f"weights {loaded.weights}, {loaded.runtime['device']}, {loaded.runtime['precision']}; {args.size} px, "
          f"filters 0..{args.filters - 1}, "
          f"{args.budget} network passes per filter")  # fmt: skip
    for layer in args.layers.split(","):
        objective = args.objective or DEFAULT_OBJECTIVE
        terms = parse_spec({"model": args.model, "method": "fourier", "layer": layer, "objective": objective})
        meter = Meter(measuring.engine, layer, args.size, seed=0, terms=terms.objective_terms)
        scores: dict[str, Scores] = {}
        for method in methods:
            rendered, seconds = render_pictures(
                loaded.engine, method, layer, filters, args.size, args.budget, args.batch_size,
                terms.objective_terms if method != SEED else DEFAULT_OBJECTIVE,
            )  # fmt: skip
            # Each of a diversity objective's pictures is measured as one of its filter's.
            n = 1 if rendered.ndim == 4 else rendered.shape[1]
            pictures = rendered.reshape(-1, *rendered.shape[-3:])
            alive, z, rho = measure(method, pictures, list(np.repeat(filters, n)), meter)
            hf, slope = spectrum_scores(pictures)
            scores[method] = Scores(
                alive, z, rho, float(np.median(hf)), float(np.median(slope)), seconds / len(filters)
            )
            if args.out:
                os.makedirs(args.out, exist_ok=True)
                side = math.ceil(math.sqrt(len(pictures)))
                grid = stitch_grid(
                    range(len(pictures)), dict(enumerate(pictures)), n=side, image_size=args.size, margin=2
                )
                with open(os.path.join(args.out, f"{layer}_{method}.png"), "wb") as file:
                    file.write(encode_png(grid))
        print(f"\n{layer}")
        print(f"{'method':<11} {'alive':>6} {'z':>8} {'rho':>6} {'hf':>7} {'slope':>6} {'s/filt':>7}")
        for method, s in scores.items():
            print(f"{method:<11} {s.alive:6.0%} {s.z:8.1f} {s.rho:6.2f} {s.hf:7.4f} {s.slope:6.2f} "
                  f"{s.seconds_per_filter:7.2f}")  # fmt: skip
        if SEED in scores and args.objective is None:
            print_targets(scores)
        if args.diversity > 1:
            print(f"\ndiversity of {args.diversity} pictures a filter (distance: 1 - Gram cosine similarity, median)")
            for method in (m for m in methods if m != SEED):
                print_diversity(loaded.engine, meter, method, layer, args, terms.objective_terms)


if __name__ == "__main__":
    main()
