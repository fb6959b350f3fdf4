"""Errors of the sidecar (all :class:`~trainer.errors.TrainerError`: the CLI prints one line)."""

from trainer.errors import TrainerError


class SidecarError(TrainerError):
    """The sidecar cannot go on (a missing topic, a fatal Kafka error, an unusable model directory)."""


class Unavailable(SidecarError):
    """Kafka or Redis stayed unreachable for longer than the configured retry period."""


class ExportFailed(SidecarError):
    """A model version could not be written (no space, no permission); the current version stays."""


class RegistryError(SidecarError):
    """The registry in Redis is missing or holds something unexpected (e.g. an unknown version)."""


class UsageError(SidecarError):
    """The command-line arguments do not say what to work on (exit status 2, as argparse's errors)."""
