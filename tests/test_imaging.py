"""Deprocess, grid order and stitching, on hand-made pictures."""

import numpy as np

from shared.pictures import FilterOutcome, decode_png, encode_png, grid_order, stitch_grid
from worker.imaging import deprocess, picture


def solid(value: int, size: int = 4) -> np.ndarray:
    return np.full((size, size, 3), value, dtype=np.uint8)


def test_deprocess_centres_on_mid_grey_with_std_25():
    rng = np.random.default_rng(0)
    picture = deprocess(rng.normal(128, 40, (32, 32, 3)))
    assert picture.dtype == np.uint8
    assert abs(picture.mean() - 127.5) < 1.5
    assert abs(picture.std() - 25.5) < 1.0  # std 0.1 of the [0, 1] range


def test_each_method_shows_its_images_its_own_way():
    rng = np.random.default_rng(1)
    raw = rng.normal(128, 40, (32, 32, 3))
    # seed and multiscale standardise (multiscale to its `contrast`); fourier and MACO's sigmoid images are
    # already on a 0..255 scale, shown rounded.
    assert np.array_equal(picture("seed", None, raw), deprocess(raw))
    assert np.array_equal(picture("multiscale", {"contrast": 0.3}, raw), deprocess(raw, contrast=0.3))
    assert np.array_equal(picture("multiscale", None, raw), deprocess(raw, contrast=0.25))
    for method in ("fourier", "maco"):
        assert np.array_equal(picture(method, None, raw), np.clip(np.rint(raw), 0, 255).astype(np.uint8))


def test_grid_order_is_by_loss_best_first_without_dead_filters():
    outcomes = [FilterOutcome(0, 1.0, False), FilterOutcome(1, 9.0, True), FilterOutcome(2, 5.0, False)]
    assert grid_order(outcomes, n=2) == [2, 0]


def test_grid_order_keeps_only_n_squared():
    outcomes = [FilterOutcome(k, float(k), False) for k in range(10)]
    assert grid_order(outcomes, n=2) == [9, 8, 7, 6]


def test_stitch_places_cells_row_major_with_black_margins_and_black_empty_cells():
    pictures = {7: solid(200), 3: solid(100), 5: solid(50)}
    grid = stitch_grid([7, 3, 5], pictures, n=2, image_size=4, margin=2)
    assert grid.shape == (2 * 4 + 2, 2 * 4 + 2, 3)
    assert (grid[0:4, 0:4] == 200).all()  # first cell: top left
    assert (grid[0:4, 6:10] == 100).all()  # second: top right
    assert (grid[6:10, 0:4] == 50).all()  # third: bottom left
    assert (grid[6:10, 6:10] == 0).all()  # fewer than n*n: black
    assert (grid[4:6, :] == 0).all() and (grid[:, 4:6] == 0).all()  # margins


def test_png_round_trip():
    picture = np.random.default_rng(1).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    assert (decode_png(encode_png(picture)) == picture).all()
