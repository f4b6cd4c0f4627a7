"""The one exception type for bad input data, so recipes can catch it and tests can match it."""


class DataError(ValueError):
    """Bad input data. The message names the file (or Hub split), the line or row, and the field."""
