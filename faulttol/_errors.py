"""Errors shared by the configuration classes of faulttol and faulttol_redis.

Public as ``faulttol.ConfigTypeError`` (and ``faulttol.validation.ConfigTypeError``, next to
the helpers that raise it); import it from there.
"""

from __future__ import annotations

__all__ = ["ConfigTypeError"]


class ConfigTypeError(TypeError, ValueError):
    """A configuration value of the wrong kind (a string where a number goes, a non-exception
    type in an exception list...).

    It is both a ``TypeError`` (Python's convention for a wrong type) and a ``ValueError`` (the
    project's rule: invalid configuration raises ``ValueError`` naming the field), so code
    written for either convention catches it.
    """
