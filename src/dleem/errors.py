"""Errors a user can act on.

Every problem with a user's input or environment is raised as a `DleemError` whose
message is one line naming the file and the problem. The CLI prints that line and
exits with code 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from os import PathLike


class DleemError(Exception):
    """A problem the user can fix (bad input, bad option, missing file). CLI exit code 2."""


class InputError(DleemError):
    """An input file or array that dleem cannot use as it is."""

    def __init__(self, source: str | PathLike[str] | None, problem: str) -> None:
        self.source = None if source is None else str(source)
        self.problem = problem
        super().__init__(f"{self.source}: {problem}" if self.source else problem)


class RegistrationError(DleemError):
    """An HR region that could not be placed in the LR image with confidence."""


def reject_unknown_keys(
    data: Mapping[str, object], known: Iterable[str], what: str, prefix: str = ""
) -> None:
    """Raise a DleemError naming the first key of `data` not in `known`: a typo is an error.

    `prefix` names the table a nested key sits in (``"normalization."``).
    """
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise DleemError(f"{what}: unknown key '{prefix}{unknown[0]}'")
