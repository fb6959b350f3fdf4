"""The schemas' benchmark (docs/performance.md): `python -m schemas.bench.codec`, run by `make bench`."""
