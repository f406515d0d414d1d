"""The one exception type for bad user input."""


class BoltInputError(ValueError):
    """Bad input: the message names the file, row and field. Raised before any output is written."""
