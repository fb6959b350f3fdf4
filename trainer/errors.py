"""Root exception of the `trainer` package."""


class TrainerError(Exception):
    """Raised for problems the user can fix (bad input file, bad flag, unusable model directory).

    The message is one line and names what was received; the CLI prints it and exits non-zero.
    """


class InputError(TrainerError):
    """A samples file is missing, unreadable, of an unknown format, or holds no usable sample."""


class ModelDirError(TrainerError):
    """A model directory (export or checkpoint) is missing, incomplete or incompatible."""
