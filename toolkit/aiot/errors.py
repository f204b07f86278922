"""The one error type the toolkit raises for anything a user can fix."""

from __future__ import annotations


class ToolkitError(Exception):
    """A problem the user can act on.

    ``message`` says what went wrong and where; ``hint`` says what to do about it.
    The CLI prints both and exits with ``exit_code`` instead of a traceback.
    """

    def __init__(self, message: str, hint: str | None = None, exit_code: int = 2):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.exit_code = exit_code

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message}\n  hint: {self.hint}"
        return self.message
