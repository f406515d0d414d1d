"""BOLT's own exceptions: each message is one sentence a user can act on."""


class BoltInputError(ValueError):
    """Bad input: the message names the file, row and field. Raised before any output is written."""


class NonFiniteError(RuntimeError):
    """A weight, loss or parameter is NaN or infinite: the stage stops before saving anything."""


class NothingToLearn(RuntimeError):
    """The round's scored rollouts carry no information to fit: it stops after scoring, before
    training, and says what to try."""
