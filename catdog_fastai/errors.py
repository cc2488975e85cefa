"""One root for every error a person can fix: `except CatdogError` catches them all, and each CLI prints its message
in one line instead of a traceback. Each kind still says where the problem is (data, model, export, ...)."""

from __future__ import annotations


class CatdogError(ValueError):
    """A problem with the user's input, files or settings; the message says what was expected and what to do."""


class ResumeError(CatdogError):
    """`--resume` cannot continue: no checkpoint, or one that cannot be read."""


class OutputError(CatdogError):
    """The output folder cannot be written."""


class ExportError(CatdogError):
    """An export that is missing, damaged, or from an incompatible version; the message says which."""


class DataError(CatdogError):
    """Training data that cannot be used; the message says what was expected."""
