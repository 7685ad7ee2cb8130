"""User-facing errors: raised for bad input or options, printed without a traceback."""
from __future__ import annotations


class ScarError(Exception):
    """An error the user can fix; its message is shown as-is by the command line and the app."""


class InputError(ScarError):
    """A problem in an input file, located by file, place ("line 12", "row 3") and field."""

    def __init__(self, path: str, message: str, where: str | None = None, field: str | None = None):
        self.path, self.where, self.field, self.reason = str(path), where, field, message
        place = self.path + (f", {where}" if where else "")
        what = f"field '{field}': " if field else ""
        super().__init__(f"{place}: {what}{message}")


def terminal_text(message: str) -> str:
    """`message` with every non-printable character escaped (ANSI escapes, bidi overrides,
    zero-width characters, carriage returns), so data quoted in a message cannot restyle,
    reorder or hide text in the user's terminal. Line breaks between sentences are kept."""
    if message.isprintable():
        return message
    return "".join(c if c.isprintable() or c == "\n" else c.encode("unicode_escape").decode("ascii")
                   for c in message)
