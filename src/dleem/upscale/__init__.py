"""Upscale an LR image of any size with a trained model: seamless, streaming, resumable.

- `upscale_array`: an image in memory or a lazy array in, NumPy out.
- `upscale_dask`: a dask array in, a lazy dask array out (a cluster runs the tiles).
- `upscale_file`: a file in, OME-TIFF or OME-Zarr out, streamed tile by tile, bounded
  memory, ``resume``, optional consistency map. `dleem upscale` calls it.
- `check_input`: what they refuse and warn about; `consistency_map`: degraded SR - LR;
  `TileGrid`: the tile geometry.

Modules: `tiling` (geometry, the tile function), `engine` (local batched execution),
`stream` (lazy input, work store, writers), `distributed` (dask), `consistency`, and
`pipeline` (arrays and files, the checks). Names are attached lazily, so importing the
package imports neither torch nor dask.
"""

import lazy_loader as _lazy

__getattr__, __dir__, __all__ = _lazy.attach(
    __name__,
    submod_attrs={
        "pipeline": ["upscale_array", "upscale_file", "check_input"],
        "distributed": ["upscale_dask"],
        "consistency": ["consistency_map"],
        "tiling": ["TileGrid"],
    },
)
