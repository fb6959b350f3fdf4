"""`python -m jobs.bench_embedded`: the stable command name of the embedded runtime's benchmark.

The benchmark itself is jobs.bench.embedded; this name stays because scripts and the performance
targets (docs/performance.md) quote it.
"""

import sys

from jobs.bench.embedded import main

if __name__ == "__main__":
    sys.exit(main())
