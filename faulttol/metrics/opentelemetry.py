"""OpenTelemetry export of faulttol metrics (needs the ``opentelemetry`` extra: opentelemetry-api).

:class:`OpenTelemetryExporter` creates one asynchronous instrument per metric on a meter named
``faulttol``: observable counters for the counts since registration (a breaker's own
``counters``, events of rarer things), observable gauges for values read at collection
time. Whatever reader and exporter the application's ``MeterProvider`` has (OTLP,
Prometheus, console...) then ships them. Instrument names are listed in docs/metrics.md::

    from faulttol.metrics.opentelemetry import OpenTelemetryExporter

    OpenTelemetryExporter().register_circuit_breaker(breaker).register_provider(provider)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from importlib.metadata import PackageNotFoundError, version

try:
    from opentelemetry import metrics
    from opentelemetry.metrics import CallbackOptions, Meter, MeterProvider, Observation
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "faulttol.metrics.opentelemetry needs opentelemetry-api: "
        "pip install 'faulttol[opentelemetry]'"
    ) from exc

from ._collect import METRICS, MetricKind, MetricsCollector, MetricsExporter, MetricSpec

__all__ = ["METER_NAME", "OpenTelemetryExporter"]

METER_NAME = "faulttol"
"""The instrumentation scope (meter) name of every faulttol instrument."""


def _version() -> str | None:
    try:
        return version("faulttol")
    except PackageNotFoundError:  # pragma: no cover - running from a bare source tree
        return None


def _callback(
    collector: MetricsCollector, spec: MetricSpec
) -> Callable[[CallbackOptions], Iterable[Observation]]:
    if spec.kind is MetricKind.COUNTER:  # counts are whole numbers: report ints

        def observe(options: CallbackOptions) -> Iterable[Observation]:
            return [Observation(int(value), labels) for labels, value in collector.points(spec)]

    else:

        def observe(options: CallbackOptions) -> Iterable[Observation]:
            return [Observation(value, labels) for labels, value in collector.points(spec)]

    return observe


class OpenTelemetryExporter(MetricsExporter):
    """Exports registered components through an OpenTelemetry ``MeterProvider``.

    Args:
        meter_provider: the provider to create the ``faulttol`` meter on; ``None`` means the
            global one (``opentelemetry.metrics.get_meter_provider()``).

    Create one exporter per meter provider (a second one would create the same instruments
    again). ``register_*`` methods return the exporter, so calls chain. Counters start at
    zero when a component is registered.
    """

    def __init__(self, meter_provider: MeterProvider | None = None) -> None:
        super().__init__()
        provider = metrics.get_meter_provider() if meter_provider is None else meter_provider
        self._meter = provider.get_meter(METER_NAME, _version())
        for spec in METRICS:
            callbacks = [_callback(self._collector, spec)]
            if spec.kind is MetricKind.COUNTER:
                self._meter.create_observable_counter(
                    spec.otel_name, callbacks, unit=spec.unit, description=spec.description
                )
            else:
                self._meter.create_observable_gauge(
                    spec.otel_name, callbacks, unit=spec.unit, description=spec.description
                )

    @property
    def meter(self) -> Meter:
        """The ``faulttol`` meter the instruments were created on."""
        return self._meter
