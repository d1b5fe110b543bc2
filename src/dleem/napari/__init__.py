"""dleem in napari (``pip install "dleem[napari]"``): the ``dleem`` reader and dock widget.

Only this package imports napari and Qt; the core package and the CLI never do. The
reader opens a workspace as calibrated, registered layers (world = the LR grid in µm);
the widget runs the steps through the same API functions as the CLI. See docs/napari.md.
"""
