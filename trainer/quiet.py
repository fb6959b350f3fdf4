"""Keep TensorFlow's start-up chatter off the console of the trainer's commands.

``TF_CPP_MIN_LOG_LEVEL`` silences TensorFlow's C++ log lines once absl logging is initialised, but
a few (the oneDNN notice, "All log messages before absl::InitializeLog() ...") are printed during
``import tensorflow``, before that. So the import runs with file descriptor 2 pointed at a
temporary file, which is replayed only if the import fails.
"""

from __future__ import annotations

import os
import sys
import tempfile


def import_tensorflow() -> None:
    if "tensorflow" in sys.modules:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            import tensorflow  # noqa: F401
        except BaseException:
            os.dup2(saved, 2)
            sink.seek(0)
            sys.stderr.write(sink.read().decode("utf-8", "replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
