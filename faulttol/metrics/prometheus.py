"""Prometheus export of faulttol metrics (needs the ``prometheus`` extra: prometheus-client).

:class:`PrometheusExporter` is a ``prometheus_client`` custom collector: at every scrape it
reads the registered breakers, retries and providers (gauges) and their counts since
registration (counters: a breaker's own ``counters``, events of rarer things). Metric
names are listed in docs/metrics.md::

    from prometheus_client import start_http_server
    from faulttol.metrics.prometheus import PrometheusExporter

    PrometheusExporter().register_circuit_breaker(breaker).register_provider(provider)
    start_http_server(9100)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

try:
    from prometheus_client.metrics_core import Metric
    from prometheus_client.registry import REGISTRY, Collector, CollectorRegistry
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "faulttol.metrics.prometheus needs prometheus-client: pip install 'faulttol[prometheus]'"
    ) from exc

from ._collect import METRICS, MetricKind, MetricsExporter, MetricSpec, Source

__all__ = ["PrometheusExporter"]

_TOTAL = "_total"


def _family(spec: MetricSpec) -> Metric:
    if spec.kind is MetricKind.COUNTER:
        return Metric(spec.prometheus_name.removesuffix(_TOTAL), spec.description, "counter")
    return Metric(spec.prometheus_name, spec.description, "gauge")


class PrometheusExporter(MetricsExporter, Collector):
    """Exports registered components to a ``prometheus_client`` registry.

    Args:
        registry: where to register this collector; ``None`` means the default
            ``prometheus_client.REGISTRY`` (what ``start_http_server`` serves).

    ``register_circuit_breaker``, ``register_retry`` and ``register_provider`` return the
    exporter, so calls chain. Counters start at zero when a component is registered.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        MetricsExporter.__init__(self)
        self._registry = REGISTRY if registry is None else registry
        self._registry.register(self)

    @property
    def registry(self) -> CollectorRegistry:
        """The registry this exporter is registered with."""
        return self._registry

    def unregister(self) -> None:
        """Remove this exporter from its registry (its metrics disappear from scrapes)."""
        self._registry.unregister(self)

    def describe(self) -> Iterable[Metric]:
        """The metric families, without samples (lets the registry check names cheaply)."""
        return [_family(spec) for spec in METRICS]

    def collect(self) -> Iterable[Metric]:
        """Read every registered component now and yield one family per metric."""
        samples: dict[Source, Sequence[Any]] = {
            source: self._collector.samples(source) for source in Source
        }
        for spec in METRICS:
            family = _family(spec)
            sample_name = spec.prometheus_name
            for labels, value in self._collector.points(spec, samples[spec.source]):
                family.add_sample(sample_name, {k: str(v) for k, v in labels.items()}, value)
            yield family
