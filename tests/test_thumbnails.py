"""Thumbnails: shrunk to fit, colours kept, never enlarged."""

import numpy as np

from shared.pictures import decode_png, encode_png
from shared.thumbnails import png_thumbnail


def test_a_big_picture_shrinks_to_fit_keeping_its_colour_and_aspect():
    picture = np.full((530, 1059, 3), 200, dtype=np.uint8)
    small = decode_png(png_thumbnail(encode_png(picture), 256))
    assert small.shape == (128, 256, 3) and (small == 200).all()


def test_a_picture_that_fits_comes_back_unchanged():
    png = encode_png(np.full((100, 100, 3), 50, dtype=np.uint8))
    assert png_thumbnail(png, 256) == png
