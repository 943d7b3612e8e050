"""MkDocs hooks of this site: the changelog page shows the repository's CHANGELOG.md.

CHANGELOG.md lives at the repository root, outside ``docs/``, and is written for readers of the
repository: its links to ``docs/<page>.md`` become links to the page, and links to other files
of the repository (which are not part of the site) become plain text, so that
``mkdocs build --strict`` stays clean whatever the changelog links to.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

MARKER = "<!-- CHANGELOG.md -->"
LINK = re.compile(r"(?<!!)\[([^\]]+)\]\(([^)\s]+)\)")


def _site_link(match: re.Match[str]) -> str:
    text, target = match.group(1), match.group(2)
    if re.match(r"^[a-z][a-z0-9+.-]*:|^#", target):  # a URL or an anchor: as written
        return match.group(0)
    if target.startswith("docs/"):
        return f"[{text}]({target.removeprefix('docs/')})"
    return text


def on_page_markdown(markdown: str, *, page: Any, config: Any, **kwargs: Any) -> str:
    if MARKER not in markdown:
        return markdown
    changelog = Path(config.config_file_path).parent / "CHANGELOG.md"
    if not changelog.is_file():
        return markdown.replace(MARKER, "There is no CHANGELOG.md in this copy of the project.")
    return markdown.replace(MARKER, LINK.sub(_site_link, changelog.read_text(encoding="utf-8")))
