"""Metrics export for Prometheus and OpenTelemetry (optional extras).

Import an exporter module to use it; this package itself imports neither client library::

    # pip install 'faulttol[prometheus]'
    from faulttol.metrics.prometheus import PrometheusExporter
    # pip install 'faulttol[opentelemetry]'
    from faulttol.metrics.opentelemetry import OpenTelemetryExporter

Both export the same metrics, listed in :data:`METRICS` and in docs/metrics.md, from one
exporter-independent :class:`MetricsCollector`.
"""

from __future__ import annotations

from ._collect import MetricsCollector, MetricsExporter
from ._counting import RETRY_CALL_OUTCOMES, ProviderLike
from ._spec import (
    BREAKER_CALL_OUTCOMES,
    METRICS,
    SLOW_CALL_OUTCOMES,
    TIME_LIMITER_CALL_KINDS,
    MetricKind,
    MetricSpec,
    Source,
)

__all__ = [
    "BREAKER_CALL_OUTCOMES",
    "METRICS",
    "RETRY_CALL_OUTCOMES",
    "SLOW_CALL_OUTCOMES",
    "TIME_LIMITER_CALL_KINDS",
    "MetricKind",
    "MetricSpec",
    "MetricsCollector",
    "MetricsExporter",
    "ProviderLike",
    "Source",
]
