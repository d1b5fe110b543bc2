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


class ParameterError(DleemError):
    """A parameter value a step cannot use. The message names the parameter as the API
    spells it (``tile``); the CLI shows the flag instead (``--tile``)."""

    def __init__(self, parameter: str, problem: str) -> None:
        self.parameter = parameter
        self.problem = problem
        super().__init__(f"{parameter} {problem}")

    def as_flag(self, flags: Mapping[str, str] | None = None) -> str:
        """The message with the parameter spelled as a command-line flag; ``flags`` maps an
        API name to the flag's name where they differ (``pixel_size_um`` -> ``pixel_size``)."""
        name = (flags or {}).get(self.parameter, self.parameter)
        return f"--{name.replace('_', '-')} {self.problem}"


class RegistrationError(DleemError):
    """An HR region that could not be placed in the LR image with confidence."""


class Cancelled(Exception):  # noqa: N818 - the name a user raises from a progress callback
    """Raised inside a progress callback to stop a step cleanly.

    The step leaves nothing under a final name and keeps its partial state (checkpoints,
    the upscale work store) for ``resume``. The CLI maps it, like Ctrl-C, to exit code 130.
    """


def reject_unknown_keys(
    data: Mapping[str, object], known: Iterable[str], what: str, prefix: str = ""
) -> None:
    """Raise a DleemError naming the first key of `data` not in `known`: a typo is an error.

    `prefix` names the table a nested key sits in (``"normalization."``).
    """
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise DleemError(f"{what}: unknown key '{prefix}{unknown[0]}'")
