//! Configuration metrics, named `shardgate_config_*`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use shardgate_core::Metrics;

/// `{kind}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    /// `ssls`, `upstreams`, `stream_routes`.
    pub kind: String,
}

/// `{ssl, sni}` for certificate expiry.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CertLabels {
    /// The SSL object id.
    pub ssl: String,
    /// The first SNI it serves.
    pub sni: String,
}

/// The configuration metric families.
#[derive(Debug, Clone, Default)]
pub struct ControlMetrics {
    /// `shardgate_config_generation`: store revision of the published
    /// snapshot (the last revision applied).
    pub generation: Gauge,
    /// `shardgate_config_applies_total`: snapshots published.
    pub applies: Counter,
    /// `shardgate_config_apply_errors_total{kind}`: resource versions rejected
    /// while applying (invalid stored value or failed compilation).
    pub apply_errors: Family<KindLabels, Counter>,
    /// `shardgate_config_problems`: resources currently left out.
    pub problems: Gauge,
    /// `shardgate_config_resources{kind}`: resources loaded.
    pub resources: Family<KindLabels, Gauge>,
    /// `shardgate_config_resyncs_total`: full reloads from the store.
    pub resyncs: Counter,
    /// `shardgate_store_up`: 1 while the watch on the store runs, 0 while
    /// the store cannot be reached (the data plane serves its last snapshot).
    pub store_up: Gauge,
    /// `shardgate_config_watch_restarts_total`: watches resumed after the
    /// store broke them (a full reload is a resync, counted apart).
    pub watch_restarts: Counter,
    /// `shardgate_config_last_event_timestamp_seconds`: when the last change
    /// arrived from the store (`time() - ...` is the time since).
    pub last_event: Gauge<f64, std::sync::atomic::AtomicU64>,
    /// `shardgate_tls_certificate_expiry_timestamp_seconds{ssl, sni}`.
    pub cert_expiry: Family<CertLabels, Gauge>,
}

impl ControlMetrics {
    /// Creates and registers the families.
    pub fn register(metrics: &Metrics) -> Self {
        let m = ControlMetrics::default();
        // Every kind has its series from the start, so rate() alerts work at 0.
        for kind in shardgate_model::ResourceKind::ALL {
            let labels = KindLabels { kind: kind.plural().to_owned() };
            m.apply_errors.get_or_create_owned(&labels);
            m.resources.get_or_create_owned(&labels);
        }
        metrics.register(|r| {
            r.register(
                "config_generation",
                "Store revision of the published configuration snapshot",
                m.generation.clone(),
            );
            r.register("config_applies", "Configuration snapshots published", m.applies.clone());
            r.register(
                "config_apply_errors",
                "Resource versions rejected while applying configuration",
                m.apply_errors.clone(),
            );
            r.register("config_problems", "Resources currently left out of the configuration", m.problems.clone());
            r.register("config_resources", "Resources in the published configuration", m.resources.clone());
            r.register("config_resyncs", "Full configuration reloads from the store", m.resyncs.clone());
            r.register(
                "store_up",
                "1 while the configuration store is watched, 0 while it cannot be reached",
                m.store_up.clone(),
            );
            r.register(
                "config_watch_restarts",
                "Store watches resumed after the store broke them",
                m.watch_restarts.clone(),
            );
            r.register(
                "config_last_event_timestamp_seconds",
                "When the last configuration change arrived from the store, in seconds since the epoch",
                m.last_event.clone(),
            );
            r.register(
                "tls_certificate_expiry_timestamp_seconds",
                "notAfter of the earliest-expiring certificate of an SSL object, in seconds since the epoch",
                m.cert_expiry.clone(),
            );
        });
        m
    }
}
