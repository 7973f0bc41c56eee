"""Prometheus metrics of one node, in a registry of its own (several nodes may share a process)."""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)


class Metrics:
    """Every metric a node exports on `/metrics`; parts add theirs through `registry`."""

    def __init__(self, node_id: str) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.node_id = node_id
        # CPU seconds, RSS and open files of the process serving the node (process_*): what a
        # load test scrapes to compare nodes' cost.
        ProcessCollector(registry=self.registry)
        self.http_requests = Counter(
            "live_http_requests_total",
            "HTTP requests by route and status",
            ["route", "status"],
            registry=self.registry,
        )
        self.http_errors = Counter(
            "live_http_errors_total",
            "HTTP error responses by code",
            ["code"],
            registry=self.registry,
        )
        self.http_connection_limits = Counter(
            "live_http_connection_limits_total",
            "Decisions of the HTTP connection limits (per address, first request's head)",
            ["limit", "decision"],
            registry=self.registry,
        )
        # Internal errors not logged: the same cause was logged within the minute (live/http/faults)
        self.http_errors_unlogged = Counter(
            "live_http_internal_errors_unlogged_total",
            "Internal errors whose log line was suppressed (same cause logged within a minute)",
            registry=self.registry,
        )
        self.sockets = Gauge(
            "live_socketio_connections", "Connected Socket.IO clients", registry=self.registry
        )
        self.chat_messages = Counter(
            "live_chat_messages_total",
            "Chat messages by outcome",
            ["outcome"],
            registry=self.registry,
        )
        self.chat_events_in = Counter(
            "live_chat_bus_messages_total",
            "Messages received from other nodes over the Redis bus",
            registry=self.registry,
        )
        self.chat_handle_seconds = Histogram(
            "live_chat_handle_seconds",
            "Time to admit, store and fan out one chat message",
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0),
            registry=self.registry,
        )
        self.slow_clients_dropped = Counter(
            "live_chat_slow_clients_dropped_total",
            "Clients disconnected because their send queue was full",
            registry=self.registry,
        )
        self.chat_limits = Counter(
            "live_chat_limit_decisions_total",
            "Decisions of the /live connection and request limits",
            ["limit", "decision"],
            registry=self.registry,
        )
        self.chat_translations = Counter(
            "live_chat_translations_total",
            "Chat message translations by outcome (translated, cached, failed, timeout, dropped)",
            ["outcome"],
            registry=self.registry,
        )
        self.chat_translation_seconds = Histogram(
            "live_chat_translation_seconds",
            "Time of one request to the translation service",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
            registry=self.registry,
        )
        self.likes = Counter("live_likes_total", "Likes received", registry=self.registry)
        self.whep_refused = Counter(
            "live_whep_refused_total",
            "WHEP offers refused by a limit, by reason (full, too_many_sessions)",
            ["reason"],
            registry=self.registry,
        )
        self.mod_actions = Counter(
            "live_mod_actions_total", "Moderator actions", ["action"], registry=self.registry
        )
        self.mod_refusals = Counter(
            "live_mod_refusals_total",
            "Mutes and bans refused because the target is the room's owner, a host or a moderator",
            ["action"],
            registry=self.registry,
        )
        self.socket_buys = Counter(
            "live_socket_buys_total",
            "Socket.IO `buy` requests by result: reserved, replay, or the refusal's error code",
            ["result"],
            registry=self.registry,
        )
        self.rooms_joined = Gauge(
            "live_rooms_with_local_viewers",
            "Rooms with viewers on this node",
            registry=self.registry,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)
