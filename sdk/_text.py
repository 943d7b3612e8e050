"""Text from people, quoted as data inside prompts we build.

One function, :func:`quote`, for every prompt (the profile block, the summarizer's prompt,
the judge's prompt): what it returns can neither close the tags or quotation it is put in nor
forge others, and hides nothing from a person reading the prompt.

* ``<``, ``>`` and ``"`` are replaced (``‹``, ``›``, ``”``), and so are their look-alikes that
  Unicode compatibility normalisation (NFKC) turns into them (fullwidth ``＜``, small ``﹤``)
  and HTML character references to them (``&lt;``, ``&#60;``, ``&amp;lt;``). Other characters
  are left as they are (NFKC of the whole text would also turn ``x²`` into ``x2`` and
  ``你好，`` into ``你好,``).
* Invisible characters are removed: format characters (Unicode category Cf: bidi embeddings,
  overrides and isolates, zero-width spaces, the byte order mark, tag characters) and control
  characters other than line breaks and tabs. A zero-width joiner or non-joiner is kept only
  between two non-ASCII letters, marks or emoji, where emoji sequences (👨‍👩‍👧) and scripts
  such as Persian need it.

Imports nothing of ours, so every layer (profiles, backends) can use it.
"""

from __future__ import annotations

import html
import re
import unicodedata

__all__ = ["quote"]

# the characters that delimit the blocks and quotations we build, and what replaces them
_STRUCTURE = {"<": "‹", ">": "›", '"': "”"}
# the characters whose NFKC form is one of them (a test checks the running Python's Unicode)
_LOOKALIKES = {"﹤": "<", "﹥": ">", "＂": '"', "＜": "<", "＞": ">"}
_TABLE = str.maketrans({**{c: _STRUCTURE[v] for c, v in _LOOKALIKES.items()}, **_STRUCTURE})
# format characters (category Cf, to Unicode 15.1) but the two joiners, and control characters
# (category Cc) other than tab and line breaks (a test checks the running Python's Unicode)
_HIDDEN = re.compile(
    "[\x00-\x08\x0e-\x1f\x7f-\x84\x86-\x9f\xad\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891"
    "\u08e2\u180e\u200b\u200e\u200f\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb"
    "\U000110bd\U000110cd\U00013430-\U0001343f\U0001bca0-\U0001bca3\U0001d173-\U0001d17a"
    "\U000e0001\U000e0020-\U000e007f]")
_JOINER = re.compile("[\u200c\u200d]")
# what a joiner may stand between: letters, marks, emoji and their modifiers (never ASCII)
_JOINED = frozenset({"Ll", "Lm", "Lo", "Lt", "Lu", "Mc", "Me", "Mn", "Sk", "So"})
# an HTML character reference, behind any number of "amp;" (``&amp;lt;`` reads as ``&lt;``)
_REFERENCE = re.compile(r"&(?:amp;?)*(#0*[0-9]{1,8}|#x0*[0-9a-f]{1,8}|[a-z][a-z0-9]{1,31})(;?)",
                        re.IGNORECASE)


def _reference(match: re.Match[str]) -> str:
    """The characters a reference stands for where quoting replaces or removes one of them
    (so that ``&lt;`` is quoted as ``<`` is); any other reference as it was written."""
    text = html.unescape(f"&{match.group(1)}{match.group(2)}")
    if any(c in _STRUCTURE or c in _LOOKALIKES or _HIDDEN.match(c) or _JOINER.match(c)
           for c in text):
        return text
    return match.group(0)


def _joiner(match: re.Match[str]) -> str:
    """A zero-width joiner or non-joiner where it joins two non-ASCII letters, marks or
    emoji; elsewhere nothing."""
    text, at = match.string, match.start()
    return match.group(0) if 0 < at < len(text) - 1 and all(
        c > "\x7f" and unicodedata.category(c) in _JOINED
        for c in (text[at - 1], text[at + 1])) else ""


def quote(text: str, limit: int | None = None, *, lines: bool = False) -> str:
    """``text`` made safe as data inside a tagged block or a quotation (see the module
    docstring): ``<``, ``>``, ``"``, their look-alikes and references to them replaced,
    invisible characters removed, at most ``limit`` characters (cut with "…"; None: no cap).
    One paragraph, unless ``lines``: then its line breaks are kept (each as ``\\n``, spaces
    at line ends dropped), for text whose layout matters, such as an answer being judged."""
    safe = _REFERENCE.sub(_reference, text) if "&" in text else text
    safe = _HIDDEN.sub("", safe)
    if "\u200c" in safe or "\u200d" in safe:
        safe = _JOINER.sub(_joiner, safe)
    safe = safe.translate(_TABLE)
    if lines:
        safe = "\n".join(line.rstrip() for line in safe.strip().splitlines())
    else:
        safe = " ".join(safe.split())
    return safe if limit is None or len(safe) <= limit else safe[: limit - 1].rstrip() + "…"
