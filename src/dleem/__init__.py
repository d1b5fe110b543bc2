"""dleem: Deep-Learning-Enhanced Electron Microscopy.

Register small high-resolution (HR) SEM regions into a low-resolution (LR) map of the
whole area, learn LR -> HR on the registered pairs, upscale the whole map, and
evaluate the result honestly.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("dleem")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
