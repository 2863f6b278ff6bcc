"""The error every file reader raises: it names the file and, when it can, the line."""

from __future__ import annotations


class FileLineError(Exception):
    """A file that cannot be used: ``str()`` is ``path:line: message``, or ``path: message``
    when the problem concerns the whole file (``line`` 0)."""

    def __init__(self, path: str, line: int, message: str) -> None:
        self.path = path
        self.line = line
        self.message = message
        super().__init__(str(self))

    def __str__(self) -> str:
        if self.line:
            return f"{self.path}:{self.line}: {self.message}"
        return f"{self.path}: {self.message}"
