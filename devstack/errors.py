"""Root exception of the developer stack (`devstack`): the local broker, redis-server and Flink cluster."""

from common.errors import CommonError


class DevStackError(CommonError):
    """A local service could not be started, reached or stopped; the message says what was received."""
