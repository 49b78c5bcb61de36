"""Search snippets: the server marks each hit with U+0002 ... U+0003; this splits a
snippet into plain and hit parts so that an application renders hits as text
(highlighted), never by pasting the snippet into HTML.

Pure functions, no I/O: the chat and any other client share them.
"""

from __future__ import annotations

from dataclasses import dataclass

HIT_START = "\x02"
HIT_END = "\x03"

Part = tuple[str, bool]  # (text, is_hit)


def split_snippet(snippet: str) -> list[Part]:
    """`snippet` as `(text, is_hit)` parts, in order, without the markers.

    Forgiving, since the snippet comes from the network: an end without a start is
    dropped, a start inside a hit is dropped, and a hit still open at the end runs to
    the end (the server cut the text inside it). Empty parts are left out and
    neighbours of the same kind are joined, so `"".join(t for t, _ in parts)` is the
    snippet without its markers.
    """
    parts: list[Part] = []
    current: list[str] = []
    in_hit = False

    def close() -> None:
        text = "".join(current)
        current.clear()
        if not text:
            return
        if parts and parts[-1][1] == in_hit:
            parts[-1] = (parts[-1][0] + text, in_hit)
        else:
            parts.append((text, in_hit))

    for char in snippet:
        if char == HIT_START and not in_hit:
            close()
            in_hit = True
        elif char == HIT_END and in_hit:
            close()
            in_hit = False
        elif char not in (HIT_START, HIT_END):
            current.append(char)
    close()
    return parts


@dataclass(frozen=True, slots=True)
class Snippet:
    """A search result's snippet as the server sent it (`raw`, with its markers)."""

    raw: str

    @property
    def parts(self) -> list[Part]:
        """`(text, is_hit)` pieces to render, hits highlighted (see `split_snippet`)."""
        return split_snippet(self.raw)

    @property
    def text(self) -> str:
        """The snippet as plain text, the markers removed."""
        return "".join(text for text, _ in self.parts)

    @property
    def hits(self) -> list[str]:
        """The texts the query matched, in order."""
        return [text for text, is_hit in self.parts if is_hit]

    def highlighted(self, start: str, end: str) -> str:
        """The plain text with `start` and `end` around each hit (e.g. `[` and `]`, or
        ANSI bold on and off): for terminals and logs."""
        return "".join(f"{start}{text}{end}" if hit else text for text, hit in self.parts)

    def __str__(self) -> str:
        return self.text
