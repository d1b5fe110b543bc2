"""Where to image next: the acquisition planner.

- `greedy`: array code: proposals of HR boxes on the trust map's block grid.
- `figure`: ``plan.png``, the proposals over the LR overview.
- `pipeline`: `plan_acquisitions`, the files (``dleem plan``).

Names are attached lazily.
"""

import lazy_loader as _lazy

__getattr__, __dir__, __all__ = _lazy.attach(
    __name__,
    submod_attrs={
        "greedy": ["Proposal", "propose"],
        "pipeline": ["plan_acquisitions"],
    },
)
