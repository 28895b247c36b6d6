"""Errors that tfsft raises for problems the user can fix."""

from __future__ import annotations


class TfsftError(Exception):
    """Base class of every error tfsft raises on purpose (bad input, bad options)."""


class DataError(TfsftError, ValueError):
    """A data file or table cannot be used as given.

    The message always names the source (file path, DataFrame or dataset), the row or line,
    and what to do about it.

    >>> str(DataError("train.csv", "line 7", "the text is empty", "fill it in or remove the row"))
    'train.csv, line 7: the text is empty. Fill it in or remove the row.'
    """

    def __init__(self, source: str, where: str | None, problem: str, fix: str | None = None):
        self.source = source
        self.where = where
        self.problem = problem
        self.fix = fix
        location = f"{source}, {where}" if where else source
        message = f"{location}: {problem}."
        if fix:
            message += f" {fix[0].upper()}{fix[1:]}."
        super().__init__(message)


class ConfigError(TfsftError, ValueError):
    """An option or configuration value is invalid."""


class CheckpointError(TfsftError, ValueError):
    """A model checkpoint folder is missing, incomplete or of an unsupported kind."""


class ExportError(TfsftError):
    """A converter (tf2onnx, the TFLite converter) could not write an artifact."""
