"""Errors the command line reports as one line (exit 2) instead of a traceback."""

from __future__ import annotations


class CsconvError(Exception):
    """A problem with the user's input or setup, stated so they can act on it."""


class InputError(CsconvError):
    """A bad input file: the message names it."""

    def __init__(self, path, problem: str):
        # Both in args so the error survives pickling from a worker process; the path as
        # text (an archive member reads `<archive>::<member>`) so it can go into JSON.
        path = str(path)
        super().__init__(path, problem)
        self.path = path
        self.problem = problem

    def __str__(self) -> str:
        return f"{self.path}: {self.problem}"
