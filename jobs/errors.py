"""Root exception of the `jobs` package."""


class JobError(Exception):
    """Base of every error the sample-join job raises on purpose; messages name what was received."""
