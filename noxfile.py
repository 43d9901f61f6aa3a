"""nox sessions: the test suite on every supported Python found here, lint, docs, package.

    nox -s tests          # the suite on each of Python 3.10-3.13 that this machine has
    nox -s tests-3.13     # one of them
    nox -s lint           # ruff, lint-imports, mypy --strict
    nox -s docs           # mkdocs build --strict
    nox -s package        # build, twine check, install the wheel, run the examples
    python noxfile.py     # print the supported Pythons found, oldest first (used by .ci/run)

Interpreters are looked up as ``python3.X`` on PATH and in pyenv's install directories
(``$PYENV_ROOT/versions/3.X.*/bin``, default ``~/.pyenv``): pyenv's shims only answer for the
versions selected with ``pyenv global``/``local``, so the real directories go first on PATH.
A version that is not found is reported and left out, so nox never fails for a missing one.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import nox

SUPPORTED_PYTHONS = ("3.10", "3.11", "3.12", "3.13")
"""The Python versions faulttol supports (pyproject.toml's classifiers), oldest first."""

nox.options.sessions = ["tests", "lint", "docs"]
nox.options.reuse_existing_virtualenvs = True


def _version_key(path: Path) -> tuple[int, ...]:
    """Sort key of a pyenv version directory such as ``3.10.13`` (newest patch last)."""
    return tuple(int(part) if part.isdigit() else -1 for part in path.name.split("."))


def _works(executable: str, version: str) -> bool:
    """True when ``executable`` runs and is Python ``version`` (a pyenv shim may be neither)."""
    try:
        done = subprocess.run(
            [executable, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True, text=True, timeout=30, check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0 and done.stdout.strip() == version


def find_pythons() -> dict[str, str]:
    """``{version: interpreter}`` for each supported version found on this machine."""
    pyenv_root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    found: dict[str, str] = {}
    for version in SUPPORTED_PYTHONS:
        candidates = [
            str(d / "bin" / f"python{version}")
            for d in sorted(pyenv_root.glob(f"versions/{version}.*"), key=_version_key,
                            reverse=True)
        ]
        on_path = shutil.which(f"python{version}")
        if on_path:
            candidates.append(on_path)
        for candidate in candidates:
            if Path(candidate).is_file() and _works(candidate, version):
                found[version] = candidate
                break
    return found


PYTHONS = find_pythons()
# nox finds an interpreter by its name (python3.X) on PATH: put the real ones first.
os.environ["PATH"] = os.pathsep.join(
    [str(Path(p).parent) for p in PYTHONS.values()] + [os.environ.get("PATH", "")]
)
NEWEST = list(PYTHONS)[-1] if PYTHONS else None


@nox.session(python=list(PYTHONS))
def tests(session: nox.Session) -> None:
    """The whole test suite (pass pytest arguments after ``--``)."""
    session.install("-e", ".[dev]")
    session.run("pytest", *session.posargs)


@nox.session(python=NEWEST)
def lint(session: nox.Session) -> None:
    """ruff, import-linter's layering contracts and mypy --strict (as .ci/run)."""
    session.install("-e", ".[dev]")
    session.run("ruff", "check", "faulttol", "faulttol_redis", "tests", "bench", "examples")
    session.run("lint-imports")
    session.run("mypy", "--strict", "faulttol", "faulttol_redis")


@nox.session(python=NEWEST)
def docs(session: nox.Session) -> None:
    """The documentation site, warnings as errors (``-- serve`` to preview it instead)."""
    session.install("-e", ".[docs]")
    session.env["NO_MKDOCS_2_WARNING"] = "1"
    if session.posargs[:1] == ["serve"]:
        session.run("mkdocs", "serve", *session.posargs[1:])
    else:
        session.run("mkdocs", "build", "--strict", *session.posargs)


@nox.session(python=NEWEST)
def package(session: nox.Session) -> None:
    """The packaging check of .ci/package, with this session's interpreter."""
    session.install("build", "twine")
    session.run("bash", ".ci/package", env={"PYTHON": "python"}, external=True)


if __name__ == "__main__":
    # For .ci/run: the versions found, oldest first; the missing ones on stderr.
    missing = [v for v in SUPPORTED_PYTHONS if v not in PYTHONS]
    if missing:
        print(f"Python {', '.join(missing)} not found on this machine", file=sys.stderr)
    print(" ".join(PYTHONS))
