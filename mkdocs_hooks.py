"""mkdocs hooks (mkdocs.yml ``hooks:``): repository files linked from the docs go into the site.

The pages are written to be read in the repository too, so they link files outside ``docs/``
with relative paths (``../examples/multidb.toml``). mkdocs only publishes ``docs/``: such a link
would be broken on the site (and fail ``mkdocs build --strict``). These hooks copy every
linked repository file that exists into the site under ``_repo/`` and point the link there; a
link to a file that does not exist is left alone, so mkdocs still reports it.
"""

from __future__ import annotations

import posixpath
import re
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

_OUTSIDE_LINK = re.compile(r"\]\((\.\./[^)#\s]+)(#[^)\s]*)?\)")
_PREFIX = "_repo"


def _repo_target(docs_dir: Path, page_uri: str, link: str) -> str | None:
    """The repository path (posix, relative to the root) a page's link points to, if outside
    docs/ and an existing file; else None."""
    root = docs_dir.parent.resolve()
    target = (docs_dir / posixpath.dirname(page_uri) / link).resolve()
    if docs_dir.resolve() in target.parents or root not in target.parents:
        return None
    if not target.is_file():
        return None
    return target.relative_to(root).as_posix()


def on_files(files: Files, config: Any) -> Files:
    """Add each repository file linked from a page to the site, under ``_repo/``."""
    docs_dir = Path(config["docs_dir"])
    wanted: set[str] = set()
    for page in files.documentation_pages():
        text = Path(page.abs_src_path or "").read_text(encoding="utf-8")
        for link, _anchor in _OUTSIDE_LINK.findall(text):
            target = _repo_target(docs_dir, page.src_uri, link)
            if target is not None:
                wanted.add(target)
    root = docs_dir.parent.resolve()
    for target in sorted(wanted):
        uri = f"{_PREFIX}/{target}"
        if files.get_file_from_path(uri) is None:
            files.append(File.generated(config, uri, abs_src_path=str(root / target)))
    return files


def on_page_markdown(markdown: str, page: Any, config: Any, files: Files) -> str:
    """Point the page's links to repository files at their copies in the site."""
    docs_dir = Path(config["docs_dir"])

    def replace(found: re.Match[str]) -> str:
        link, anchor = found.group(1), found.group(2) or ""
        target = _repo_target(docs_dir, page.file.src_uri, link)
        if target is None:
            return found.group(0)
        here = posixpath.dirname(page.file.src_uri)
        return f"]({posixpath.relpath(f'{_PREFIX}/{target}', here or '.')}{anchor})"

    return _OUTSIDE_LINK.sub(replace, markdown)
