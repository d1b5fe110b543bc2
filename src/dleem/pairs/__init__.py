"""Training pairs: geometry on the fine grid, the train / validation / test splits, the manifest."""

import lazy_loader as lazy

__getattr__, __dir__, __all__ = lazy.attach(
    __name__,
    submod_attrs={
        "geometry": ["covered_lr_pixels", "fine_grid_lr_coords", "largest_rectangle", "map_ratio",
                     "pair_lr_box", "resample_hr_to_fine"],
        "manifest": ["RegionPair", "image_stats", "make_pairs"],
        "splits": ["separate_regions", "split_boxes", "subtract_boxes"],
    },
)
