"""Reading and writing SEM images: dtype, pixel size and provenance kept."""

from dleem.io.read import SEMImage, read_image
from dleem.io.write import write_image

__all__ = ["SEMImage", "read_image", "write_image"]
