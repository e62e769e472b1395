"""Small copies of pictures, for lists and galleries on slow links."""

import io

from PIL import Image


def png_thumbnail(png: bytes, side: int) -> bytes:
    """PNG bytes of the picture shrunk to fit side x side, aspect kept; a picture that fits is returned as is."""
    image = Image.open(io.BytesIO(png))
    if max(image.size) <= side:
        return png
    image.thumbnail((side, side), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
