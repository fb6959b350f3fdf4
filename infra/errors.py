"""Root exception of the `infra` package, the developer stack (local services, `cat`, Docker)."""

from common.errors import CommonError


class InfraError(CommonError):
    """Raised when a local service cannot be started, reached or stopped; the message says what was received."""
