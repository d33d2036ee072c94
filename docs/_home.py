"""mkdocs hook: the site's home page is the repository's README.md, with its links into docs/ made relative
to the site; links to files outside docs/ keep their text and lose the link."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

_LINK = re.compile(r"(!?)\[([^\]]*)\]\((?!https?://|mailto:|#)([^)\s]+)\)")


def on_files(files: Files, config: Any) -> Files:
    root = Path(config.config_file_path).parent
    docs = Path(config.docs_dir)

    def link(m: re.Match[str]) -> str:
        bang, text, target = m.groups()
        path, _, anchor = target.partition("#")
        inside = path.removeprefix("docs/")
        if path.startswith("docs/") and (docs / inside).is_file():
            return f"{bang}[{text}]({inside}{'#' + anchor if anchor else ''})"
        return text if bang == "" else f"`{text}`"

    text = _LINK.sub(link, (root / "README.md").read_text(encoding="utf-8"))
    files.append(File.generated(config, "index.md", content=text))
    return files
