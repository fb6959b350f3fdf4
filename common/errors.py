"""Root exception of the `common` package, the shared library every deployable imports."""


class CommonError(Exception):
    """Raised for configuration and Kafka administration problems; the message says what was received."""


class ConfigError(CommonError):
    """A configuration file or value is missing, unreadable or invalid."""


class TopicError(CommonError):
    """Kafka could not be reached to list or create topics, or refused to create one."""


class ServiceError(CommonError):
    """A service (Kafka, Redis) stayed unreachable through the start-up wait, or is unfit to hold state."""
