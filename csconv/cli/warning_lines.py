"""Warnings as the command line shows them: one line each on stderr."""

from __future__ import annotations

import sys
import warnings
from contextlib import contextmanager


@contextmanager
def warnings_as_lines():
    """Every warning raised in the block as one line `csconv: warning: ...` on stderr."""
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = _show_warning
        yield


def _show_warning(message, category, filename, lineno, file=None, line=None):
    print(f"csconv: warning: {message}", file=sys.stderr)
