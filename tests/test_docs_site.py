"""The documentation site covers the whole project: every page, every public name.

* Every Markdown page under ``docs/`` is in the ``nav`` of ``mkdocs.yml`` (a page left out
  would be built but unreachable from the site's menus), and every ``nav`` entry exists.
* Every public module of ``faulttol`` and ``faulttol_redis`` (no part of its dotted name starts
  with ``_``) has a page ``docs/api/<module>.md`` that renders it with mkdocstrings.
* ``mkdocs build --strict`` succeeds (no broken link, no docstring mkdocstrings cannot read),
  and the built page of each module has an anchor for every name in the module's ``__all__``:
  what users can import is what the reference documents.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
API = DOCS / "api"
PACKAGES = ("faulttol", "faulttol_redis")


class _ConfigLoader(yaml.SafeLoader):
    """Reads mkdocs.yml, whose ``!!python/...`` tags name callables: kept as plain strings."""


def _python_tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> str:
    return f"python/{suffix}"


_ConfigLoader.add_multi_constructor("tag:yaml.org,2002:python/", _python_tag)


def _config() -> dict[str, Any]:
    text = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    config = yaml.load(text, Loader=_ConfigLoader)
    assert isinstance(config, dict)
    return config


def _nav_pages(entry: Any) -> Iterator[str]:
    """Every page path in a nav tree (strings, ``{title: page}``, ``{title: [children]}``)."""
    if isinstance(entry, str):
        yield entry
    elif isinstance(entry, list):
        for item in entry:
            yield from _nav_pages(item)
    elif isinstance(entry, dict):
        for value in entry.values():
            yield from _nav_pages(value)


def _public_modules() -> list[str]:
    names = []
    for package in PACKAGES:
        module = importlib.import_module(package)
        names.append(package)
        for info in pkgutil.walk_packages(module.__path__, f"{package}."):
            if not any(part.startswith("_") for part in info.name.split(".")):
                names.append(info.name)
    return names


PUBLIC_MODULES = _public_modules()
# A public package that only holds public submodules (e.g. faulttol.interop) exports nothing
# itself: its submodules have the pages.
DOCUMENTED = [
    name for name in PUBLIC_MODULES if hasattr(importlib.import_module(name), "__all__")
]


def test_every_docs_page_is_in_the_nav_and_every_nav_entry_exists() -> None:
    nav = list(_nav_pages(_config()["nav"]))
    pages = sorted(p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md"))
    missing = [page for page in pages if page not in nav]
    assert not missing, f"pages missing from the nav of mkdocs.yml: {missing}"
    absent = [page for page in nav if not (DOCS / page).is_file()]
    assert not absent, f"nav entries without a file in docs/: {absent}"
    repeated = sorted({page for page in nav if nav.count(page) > 1})
    assert not repeated, f"pages listed twice in the nav: {repeated}"


def test_public_modules_without_all_are_packages() -> None:
    # A public module must say what it exports, else the reference cannot know what to show.
    for name in PUBLIC_MODULES:
        module = importlib.import_module(name)
        if not hasattr(module, "__all__"):
            assert hasattr(module, "__path__"), f"{name} has no __all__"


@pytest.mark.parametrize("module_name", DOCUMENTED)
def test_every_public_module_has_an_api_page(module_name: str) -> None:
    page = API / f"{module_name}.md"
    assert page.is_file(), f"no API page {page.relative_to(ROOT)}"
    directives = re.findall(r"^::: ([\w.]+)\s*$", page.read_text(encoding="utf-8"), re.M)
    assert directives == [module_name], f"{page.name} must render ::: {module_name}"


def test_api_pages_render_only_existing_public_modules() -> None:
    stale = [p.name for p in API.glob("faulttol*.md") if p.stem not in DOCUMENTED]
    assert not stale, f"API pages for modules that are not public (or gone): {stale}"


@pytest.fixture(scope="module")
def built_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    site = tmp_path_factory.mktemp("site")
    build = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet",
         "--config-file", str(ROOT / "mkdocs.yml"), "--site-dir", str(site)],
        capture_output=True, text=True, cwd=ROOT, timeout=300, check=False,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert build.returncode == 0, f"mkdocs build --strict failed:\n{build.stdout}{build.stderr}"
    return site


def test_the_site_builds_strict(built_site: Path) -> None:
    assert (built_site / "index.html").is_file()
    assert (built_site / "api" / "index.html").is_file()


@pytest.mark.parametrize("module_name", DOCUMENTED)
def test_every_public_name_is_in_the_api_reference(built_site: Path, module_name: str) -> None:
    html = (built_site / "api" / module_name / "index.html").read_text(encoding="utf-8")
    anchors = set(re.findall(r'id="([^"]+)"', html))
    exported = importlib.import_module(module_name).__all__
    assert exported, f"{module_name}.__all__ is empty"
    missing = [name for name in exported if f"{module_name}.{name}" not in anchors]
    assert not missing, f"{module_name}: not rendered in its API page: {missing}"
