"""Root exception of the `infra` package."""


class InfraError(Exception):
    """Raised for local-stack and configuration problems; the message says what was received."""


class ConfigError(InfraError):
    """A configuration file or value is missing, unreadable or invalid."""
