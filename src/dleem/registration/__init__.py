"""Registration: place HR regions in the LR map (locate, refine), QC figures, the register step."""

import lazy_loader as lazy

__getattr__, __dir__, __all__ = lazy.attach(
    __name__,
    submod_attrs={
        "pipeline": ["nominal_ratio", "register_files"],
        "register": ["RegistrationResult", "register_region"],
        "transform": ["AffineMap", "image_corners", "scale_map"],
    },
)
