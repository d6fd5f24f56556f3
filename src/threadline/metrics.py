"""Prometheus metrics, exposed at /metrics."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

HTTP_REQUESTS = Counter("threadline_http_requests_total", "HTTP requests", ["method", "route", "status"])
HTTP_LATENCY = Histogram("threadline_http_request_seconds", "HTTP request latency", ["method", "route"])
EVENTS_PUBLISHED = Counter("threadline_events_published_total", "Events published by the outbox relay")
INBOUND_STORED = Counter("threadline_inbound_stored_total", "Inbound provider requests stored", ["kind"])
INBOUND_DUPLICATES = Counter("threadline_inbound_duplicates_total", "Provider retries dropped as duplicates",
                             ["kind"])
INBOUND_REJECTED = Counter("threadline_inbound_rejected_total", "Inbound requests refused", ["kind", "reason"])
OUTBOUND_RESULTS = Counter("threadline_outbound_total", "Outbound send attempts", ["kind", "result"])
STREAM_CLIENTS = Counter("threadline_stream_connections_total", "Live stream connections opened")
CRM_LOOKUPS = Counter("threadline_crm_lookups_total", "CRM lookups of new contacts, by outcome", ["outcome"])
WEBHOOK_DELIVERIES = Counter("threadline_webhook_deliveries_total",
                             "Outgoing webhook attempts recorded, by outcome (delivered, retry, failed: given up, "
                             "stale: superseded; ping_ok, ping_failed)", ["outcome"])
WEBHOOK_ATTEMPT_SECONDS = Histogram("threadline_webhook_attempt_seconds", "Time of one outgoing webhook POST",
                                    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
WEBHOOK_ENDPOINTS_DISABLED = Counter("threadline_webhook_endpoints_disabled_total",
                                     "Webhook endpoints disabled automatically (failing too long, or 410 Gone)")
SCHEDULED_JOBS = Counter("threadline_scheduled_jobs_total",
                         "Scheduled job attempts, by kind and outcome (done, retry, failed: kept as failed, "
                         "stale: moved or claimed again meanwhile)", ["kind", "outcome"])
SLA_BREACHES = Counter("threadline_conversation_sla_breaches_total",
                       "Conversation SLA deadlines missed, by target (first_response, resolution)", ["target"])
RETENTION_PRUNED = Counter("threadline_retention_pruned_total", "Rows removed by retention, by what they were",
                           ["what"])
