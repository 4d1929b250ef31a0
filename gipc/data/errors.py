"""The one error type of the data layer: a bad folder, file or option, told in one line."""

from __future__ import annotations


class DataError(ValueError):
    """A user-facing data problem; the message names the file or value and what to do."""
