"""dleem: Deep-Learning-Enhanced Electron Microscopy.

Register small high-resolution (HR) SEM regions into a low-resolution (LR) map of the
whole area, learn LR -> HR on the registered pairs, upscale the whole map, and
evaluate the result honestly.

The step functions and the main types are exported lazily (PEP 562), so ``import dleem``
and ``dleem --help`` load neither torch nor the image stack::

    import dleem
    ws = dleem.Workspace("ws")
    dleem.register_files("LR.tif", ["HR_1.tif"], ws)
    dleem.train(ws, "ws/models/model-mae")
    dleem.upscale_file("LR.tif", "ws/models/model-mae", "SR.ome.tif")
    dleem.evaluate_workspace(ws, ["ws/models/model-mae"])
"""

from importlib.metadata import PackageNotFoundError, version

import lazy_loader as lazy

try:
    __version__ = version("dleem")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"

__getattr__, __dir__, __all__ = lazy.attach(
    __name__,
    submod_attrs={
        "errors": ["Cancelled", "DleemError", "InputError"],
        "evaluation.pipeline": ["evaluate_workspace"],
        "models.config": ["ModelConfig"],
        "pairs.manifest": ["make_pairs"],
        "registration.pipeline": ["register_files"],
        "registration.transform": ["AffineMap"],
        "training.pipeline": ["train"],
        "upscale.pipeline": ["upscale_array", "upscale_file"],
        "workflow": ["run_workflow"],
        "workspace": ["Workspace"],
    },
)
__all__ = [*__all__, "__version__"]
