"""Reading and writing SEM images: dtype, pixel size and provenance kept."""

from dleem.io.checksum import sha256_file
from dleem.io.databar import detect_databar
from dleem.io.read import SEMImage, bits_in_use, read_image
from dleem.io.write import write_image

__all__ = ["SEMImage", "bits_in_use", "detect_databar", "read_image", "sha256_file", "write_image"]
