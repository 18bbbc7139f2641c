"""Only the optional C extension lives here; everything else is in pyproject.toml."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        # optional: without a compiler csconv still installs and decodes labels with libpng.
        Extension("csconv.core._pngunfilter", ["csconv/core/_pngunfilter.c"], optional=True, extra_compile_args=["-O3"]),
    ]
)
