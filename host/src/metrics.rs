//! Prometheus metrics (prometheus-client), served at `GET /metrics` to
//! admins. Labels are bounded: routes by pattern (never the raw path),
//! plugins by name and version, failures and events by fixed names.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// A request's route (pattern), method and status.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The route pattern, `host` routes by name, or `unmatched`.
    pub route: String,
    /// The method.
    pub method: String,
    /// The status code.
    pub status: u16,
}

/// A plugin, whatever its version.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PluginOnly {
    /// Plugin name.
    pub plugin: String,
}

/// An external sign-in provider.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProviderLabels {
    /// Its name in plinth.toml.
    pub provider: String,
}

/// A provider's drift, by severity.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DriftLabels {
    /// Its name in plinth.toml.
    pub provider: String,
    /// `warning` or `breaking`.
    pub severity: String,
}

/// A route pattern.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    /// The route pattern.
    pub route: String,
}

/// A plugin version.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PluginLabels {
    /// Plugin name.
    pub plugin: String,
    /// Its `version` setting, or the first 12 digits of its digest.
    pub version: String,
}

/// A plugin failure.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailureLabels {
    /// Plugin name.
    pub plugin: String,
    /// Its version.
    pub version: String,
    /// `trap`, `deadline`, `memory` or `flush`.
    pub kind: String,
}

/// A plugin's outgoing HTTP request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutgoingLabels {
    /// Plugin name.
    pub plugin: String,
    /// `sent` (a response came), `denied` (the allowlist, an internal
    /// address, the per-call budget) or `failed` (connection, protocol).
    pub outcome: String,
}

/// A burn rate's labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BurnLabels {
    /// The route class.
    pub class: String,
    /// `availability` or `latency`.
    pub objective: String,
    /// `5m`, `30m`, `1h`, `6h`.
    pub window: String,
}

/// One label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Named {
    /// The value.
    pub name: String,
}

/// Every metric the host records.
pub struct Metrics {
    registry: Registry,
    /// Requests by route, method and status.
    pub requests: Family<RequestLabels, Counter>,
    /// Request latency by route, seconds.
    pub latency: Family<RouteLabels, Histogram>,
    /// Instance creation time per plugin version, seconds.
    pub instantiate: Family<PluginLabels, Histogram>,
    /// Guest call time per plugin version, seconds.
    pub call: Family<PluginLabels, Histogram>,
    /// Traps, deadline and memory-cap hits, failed flushes.
    pub plugin_failures: Family<FailureLabels, Counter>,
    /// Plugins' outgoing HTTP requests by outcome.
    pub outgoing_http: Family<OutgoingLabels, Counter>,
    /// 429s by route class.
    pub rate_limited: Family<Named, Counter>,
    /// Reloads by outcome (`ok`, `failed`).
    pub reloads: Family<Named, Counter>,
    /// Sessions by event (`issued`, `revoked`).
    pub sessions: Family<Named, Counter>,
    /// Audit records appended.
    pub audit_records: Counter,
    /// Connections refused or shed at accept, by reason (`client_full`, `full`).
    pub connections_refused: Family<Named, Counter>,
    /// Requests refused because their client had its share in flight, or
    /// whose body arrived too slowly, by reason.
    pub requests_shed: Family<Named, Counter>,
    /// argon2 computations (hashes and verifications, dummy ones included).
    pub password_hashes: Counter,
    /// Versioned writes by outcome (`written`, `conflict`).
    pub versioned_writes: Family<Named, Counter>,
    /// Change streams opened.
    pub streams_opened: Counter,
    /// Change streams open now.
    pub streams_open: Gauge,
    /// Change streams closed, by reason (`client_gone`, `slow`, `gap`,
    /// `ended`, `shutdown`).
    pub streams_closed: Family<Named, Counter>,
    /// Worker jobs ended, by outcome (`done`, `failed`).
    pub jobs: Family<Named, Counter>,
    /// Time one job ran in its worker, seconds.
    pub job_seconds: Histogram,
    /// Backups by outcome (`done`, `failed`).
    pub backups: Family<Named, Counter>,
    /// How long writers waited for the last backup's cut, seconds.
    pub backup_write_pause: Gauge<f64, std::sync::atomic::AtomicU64>,
    /// Error-budget burn rates per route class, objective and window.
    pub slo_burn_rate: Family<BurnLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    /// Records a migration window's backfill went through.
    pub migration_backfill_records: Family<PluginOnly, Counter>,
    /// The share of a window's records the backfill went through (0 to 1).
    pub migration_backfill_progress: Family<PluginOnly, Gauge<f64, std::sync::atomic::AtomicU64>>,
    /// Records that did not convert between a window's data versions.
    pub migration_conversion_failures: Family<PluginOnly, Counter>,
    /// Each sign-in provider's state: 0 healthy, 1 degraded, 2 down.
    pub auth_provider_state: Family<ProviderLabels, Gauge>,
    /// Differences from a provider's baseline, as they appear.
    pub auth_drift: Family<DriftLabels, Counter>,
}

fn latency_histogram() -> Histogram {
    // 50 µs .. ~1.6 s
    Histogram::new(exponential_buckets(0.000_05, 2.0, 16))
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("plinth");
        let metrics = Self {
            requests: Family::default(),
            latency: Family::new_with_constructor(latency_histogram),
            instantiate: Family::new_with_constructor(latency_histogram),
            call: Family::new_with_constructor(latency_histogram),
            plugin_failures: Family::default(),
            outgoing_http: Family::default(),
            rate_limited: Family::default(),
            reloads: Family::default(),
            sessions: Family::default(),
            audit_records: Counter::default(),
            connections_refused: Family::default(),
            requests_shed: Family::default(),
            password_hashes: Counter::default(),
            versioned_writes: Family::default(),
            streams_opened: Counter::default(),
            streams_open: Gauge::default(),
            streams_closed: Family::default(),
            jobs: Family::default(),
            // 1 ms .. ~33 s
            job_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
            backups: Family::default(),
            backup_write_pause: Gauge::default(),
            slo_burn_rate: Family::default(),
            migration_backfill_records: Family::default(),
            migration_backfill_progress: Family::default(),
            migration_conversion_failures: Family::default(),
            auth_provider_state: Family::default(),
            auth_drift: Family::default(),
            registry: Registry::default(),
        };
        registry.register("requests", "HTTP requests by route, method and status", metrics.requests.clone());
        registry.register("request_duration_seconds", "Request latency by route", metrics.latency.clone());
        registry.register("plugin_instantiate_seconds", "Instance creation time", metrics.instantiate.clone());
        registry.register("plugin_call_seconds", "Guest handler time", metrics.call.clone());
        registry.register("plugin_failures", "Traps, deadline and memory-cap hits", metrics.plugin_failures.clone());
        registry.register(
            "plugin_outgoing_http",
            "Plugins' outgoing HTTP requests: sent, denied or failed",
            metrics.outgoing_http.clone(),
        );
        registry.register("rate_limited", "Requests refused with 429, by class", metrics.rate_limited.clone());
        registry.register("reloads", "Config reloads by outcome", metrics.reloads.clone());
        registry.register("sessions", "Sessions issued and revoked", metrics.sessions.clone());
        registry.register("audit_records", "Audit records appended", metrics.audit_records.clone());
        registry.register(
            "connections_refused",
            "Connections refused at accept, by reason",
            metrics.connections_refused.clone(),
        );
        registry.register(
            "requests_shed",
            "Requests refused for their client's share or a too slow body, by reason",
            metrics.requests_shed.clone(),
        );
        registry.register(
            "password_hashes",
            "argon2 computations, dummy verifications included",
            metrics.password_hashes.clone(),
        );
        registry.register("versioned_writes", "Versioned writes by outcome", metrics.versioned_writes.clone());
        registry.register("streams_opened", "Change streams opened", metrics.streams_opened.clone());
        registry.register("streams_open", "Change streams open now", metrics.streams_open.clone());
        registry.register(
            "streams_closed",
            "Change streams closed, by reason (slow: a subscriber fell behind)",
            metrics.streams_closed.clone(),
        );
        registry.register("jobs", "Worker jobs ended, by outcome", metrics.jobs.clone());
        registry.register("job_seconds", "Time one job ran in its worker", metrics.job_seconds.clone());
        registry.register("backups", "Backups taken while serving, by outcome", metrics.backups.clone());
        registry.register(
            "slo_burn_rate",
            "Error budget burn rate per route class, objective (availability, latency) and window; 1 spends the \
             budget exactly over the objective's period",
            metrics.slo_burn_rate.clone(),
        );
        registry.register(
            "migration_backfill_records",
            "Records a migration window's backfill went through",
            metrics.migration_backfill_records.clone(),
        );
        registry.register(
            "migration_backfill_progress",
            "Share of a migration window's records the backfill went through (1: through)",
            metrics.migration_backfill_progress.clone(),
        );
        registry.register(
            "migration_conversion_failures",
            "Records that did not convert between a migration window's data versions",
            metrics.migration_conversion_failures.clone(),
        );
        registry.register(
            "auth_provider_state",
            "Each sign-in provider's state: 0 healthy, 1 degraded, 2 down (fails closed)",
            metrics.auth_provider_state.clone(),
        );
        registry.register(
            "auth_drift",
            "Differences from a sign-in provider's baseline as they appear, by severity",
            metrics.auth_drift.clone(),
        );
        registry.register(
            "backup_write_pause_seconds",
            "How long writers waited while the last backup's cut was taken",
            metrics.backup_write_pause.clone(),
        );
        Self { registry, ..metrics }
    }
}

impl Metrics {
    /// Publishes burn rates, as computed at this scrape.
    pub fn publish_burn_rates(&self, rates: Vec<crate::slo::BurnRate>) {
        for rate in rates {
            let labels =
                BurnLabels { class: rate.class, objective: rate.objective.to_owned(), window: rate.window.to_owned() };
            self.slo_burn_rate.get_or_create(&labels).set(rate.rate);
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }

    /// Counts one event of a named family.
    pub fn count(family: &Family<Named, Counter>, name: &str) {
        family.get_or_create(&Named { name: name.to_owned() }).inc();
    }

    /// Records a duration in a histogram.
    pub fn observe(histogram: &Histogram, took: Duration) {
        histogram.observe(took.as_secs_f64());
    }
}
