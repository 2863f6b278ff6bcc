"""Build hook for the one compiled module, ntpauto._batch (everything else is in
pyproject.toml).  It is optional: where it cannot be built (no C compiler, not Linux) the
server answers every datagram in Python, as it does without it (docs/scaling.md)."""

import sys

from setuptools import Extension, setup

extensions = []
if sys.platform.startswith("linux"):
    extensions.append(Extension(
        "ntpauto._batch", ["ntpauto/_batch.c"],
        depends=["ntpauto/_digests.h", "ntpauto/_limiter.h"],
        extra_compile_args=["-O2", "-std=c11", "-Wall", "-Wextra", "-Wno-unused-parameter",
                            "-Wno-missing-field-initializers", "-Wno-cast-function-type"],
        optional=True))

setup(ext_modules=extensions)
