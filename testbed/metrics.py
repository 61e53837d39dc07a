"""The series of one metric in Prometheus' text format, as the API server serves it at
/metrics. A regex rather than a full parser: the API server's text is about 2 MB, which
prometheus_client's parser takes a quarter of a second over, and the benchmarks read it
between every two phases."""

from __future__ import annotations

import re

_LABEL = re.compile(r'(\w+)="([^"]*)"')


def samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    """(labels, value) for every series of metric `name` in `text`."""
    series = re.compile(rf"^{re.escape(name)}(?:\{{([^}}]*)\}})? (\S+)$", re.MULTILINE)
    return [(dict(_LABEL.findall(labels)), float(value)) for labels, value in series.findall(text)]
