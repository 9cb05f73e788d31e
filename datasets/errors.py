"""Errors about input data. The CLI prints their message (no traceback) and exits non-zero."""


class DataError(Exception):
    """Bad or missing input data; the message names the file (and line/column where known)."""


class MissingDataError(DataError):
    """A required data file does not exist; the message says where to get it and where to put it."""
