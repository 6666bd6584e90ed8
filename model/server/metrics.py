"""`GET /metrics` in Prometheus text format (prometheus_client), named like vLLM's `vllm:*` metrics so existing
dashboards read them: request counts, running/waiting, TTFT/TPOT/e2e histograms, KV-cache usage, prefix-cache
queries and hits (hit rate = hits / queries, in tokens)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from model.engine import EngineOutput

_LATENCY = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0,
            80.0, 160.0, 640.0)


class _EngineCollector:
    """Gauges and cumulative counters read from the engine's stats at scrape time."""

    def __init__(self, engine, model_name: str):
        self.engine, self.labels = engine, {"model_name": model_name}

    def _family(self, cls, name: str, doc: str, value: float):
        family = cls(name, doc, labels=list(self.labels))
        family.add_metric(list(self.labels.values()), value)
        return family

    def collect(self):
        s = self.engine.stats()
        yield self._family(GaugeMetricFamily, "vllm:num_requests_running", "Requests in the running batch", s.running)
        yield self._family(GaugeMetricFamily, "vllm:num_requests_waiting", "Requests waiting to be scheduled",
                           s.waiting)
        yield self._family(GaugeMetricFamily, "vllm:kv_cache_usage_perc", "Fraction of KV-cache blocks in use (0-1)",
                           s.kv_usage)
        yield self._family(CounterMetricFamily, "vllm:prefix_cache_queries", "Prompt tokens looked up in the prefix "
                           "cache", s.prefix_cache_queries)
        yield self._family(CounterMetricFamily, "vllm:prefix_cache_hits", "Prompt tokens found in the prefix cache",
                           s.prefix_cache_hits)
        yield self._family(CounterMetricFamily, "vllm:num_preemptions", "Preempted requests", s.num_preemptions)
        yield self._family(CounterMetricFamily, "vllm:prompt_tokens", "Prompt tokens computed", s.prompt_tokens)
        yield self._family(CounterMetricFamily, "vllm:generation_tokens", "Tokens generated", s.generation_tokens)
        yield self._family(CounterMetricFamily, "qvl:encoder_calls", "Images/videos run through the vision encoder",
                           s.encoder_calls)


class ServerMetrics:
    def __init__(self, engine, model_name: str):
        self.registry = CollectorRegistry()
        self.registry.register(_EngineCollector(engine, model_name))
        self.model_name = model_name
        labels = ["model_name"]
        self.success = Counter("vllm:request_success", "Finished requests", labels + ["finished_reason"],
                               registry=self.registry)
        self.ttft = Histogram("vllm:time_to_first_token_seconds", "Time to first token", labels, buckets=_LATENCY,
                              registry=self.registry)
        self.tpot = Histogram("vllm:time_per_output_token_seconds", "Time per output token after the first", labels,
                              buckets=_LATENCY, registry=self.registry)
        self.e2e = Histogram("vllm:e2e_request_latency_seconds", "Request latency", labels, buckets=_LATENCY,
                             registry=self.registry)
        self.queue = Histogram("vllm:request_queue_time_seconds", "Time waiting before the first schedule", labels,
                               buckets=_LATENCY, registry=self.registry)

    def finished(self, out: EngineOutput) -> None:
        m, name = out.metrics, self.model_name
        self.success.labels(name, out.finish_reason or "stop").inc()
        if m is None:
            return
        self.e2e.labels(name).observe(m.finished - m.arrival)
        if m.first_scheduled is not None:
            self.queue.labels(name).observe(m.first_scheduled - m.arrival)
        if m.first_token is not None:
            self.ttft.labels(name).observe(m.first_token - m.arrival)
            if out.completion_tokens > 1:
                self.tpot.labels(name).observe((m.finished - m.first_token) / (out.completion_tokens - 1))

    def render(self) -> bytes:
        return generate_latest(self.registry)
