"""GET /metrics in the Prometheus text format (prometheus_client is imported here only).

The values come from the ledger at scrape time (taskservice/ledger/gauges.py) through a custom collector on a registry
owned by the app, so there are no process-global metric singletons and every API process answers alike.
"""
from __future__ import annotations

from collections.abc import Iterator

from flask import Blueprint, Response, current_app
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Engine

from taskservice.ledger.gauges import read_gauges

metrics_api = Blueprint("metrics", __name__)


class LedgerCollector(Collector):
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def collect(self) -> Iterator[Metric]:
        gauges = read_gauges(self.engine)
        live = GaugeMetricFamily("taskservice_invocations_live", "Invocations waiting or running, by function and "
                                 "status", labels=["function", "status"])
        for (function, status), count in sorted(gauges.live.items()):
            live.add_metric([function, status], count)
        yield live
        recent = GaugeMetricFamily("taskservice_invocations_finished_recent", "Invocations created in the last 5 "
                                   "minutes that have ended, by function and status", labels=["function", "status"])
        for (function, status), count in sorted(gauges.recent_finished.items()):
            recent.add_metric([function, status], count)
        yield recent
        yield GaugeMetricFamily("taskservice_oldest_waiting_seconds", "Age of the oldest Enqueued or Retrying "
                                "invocation (0 when none): grows when workers cannot keep up or are down",
                                value=gauges.oldest_waiting_s)
        yield GaugeMetricFamily("taskservice_destination_records_pending", "Destination records the relay has not "
                                "delivered yet", value=gauges.outbox_pending)


@metrics_api.get("/metrics")
def metrics() -> Response:
    registry = current_app.extensions.get("taskservice.metrics")
    if registry is None:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(LedgerCollector(current_app.extensions["taskservice"].engine))
        current_app.extensions["taskservice.metrics"] = registry
    return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST.split(";")[0],
                    headers={"Content-Type": CONTENT_TYPE_LATEST})
