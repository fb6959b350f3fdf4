"""The native part of the package: the Avro body decoder of `schemas` (schemas/_avro.c).

Everything else is declared in setup.cfg. Building it needs a C compiler and the Python headers.
"""

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


class BuildExt(build_ext):
    """build_ext with a one-line message, instead of a compiler traceback, when no compiler works."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:
            raise SystemExit(
                f"setup: cannot build schemas/_avro.c ({type(exc).__name__}: {exc}); it needs a C compiler "
                "and the Python headers (e.g. 'apt-get install gcc python3-dev')"
            ) from exc


setup(
    ext_modules=[
        Extension(
            "schemas._avro",
            ["schemas/_avro.c", "schemas/_avro_decode.c", "schemas/_avro_program.c"],
            depends=["schemas/_avro.h"],
            extra_compile_args=["-O2", "-std=c11", "-Wall", "-Wextra"],
        )
    ],
    cmdclass={"build_ext": BuildExt},
)
