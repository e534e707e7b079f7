//! Prometheus metrics: every metric the server exports, named once here, and the
//! one-line calls that record them.
//!
//! The metrics capability owns its switch: [`Metrics::install`] runs once at start-up when
//! the admin listener is on (it serves `/metrics`), and until then every recording call is
//! a load of an empty `OnceLock` and nothing else — so a server without the admin listener
//! pays nothing. Recording is lock-free for a label set seen before (`prometheus-client`
//! families take a read lock and bump atomics).
//!
//! Labels are bounded and never carry a credential, an address or a code: routes are
//! route templates (`/api/otp/create`, or `unmatched`), statuses are numbers, plugins and
//! channels are names the operator installed, results and operations are fixed words.
//! Names follow Prometheus conventions: base units (`_seconds`), `_total` counters.
//! Values that are state rather than events (slots in use, events dropped so far) are
//! read when scraped ([`Scrape`]).

use parking_lot::RwLock;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::cell::RefCell;
use std::collections::HashSet;
use std::sync::OnceLock;
use std::time::Duration;

/// Every metric name the server exports, as a scrape shows it (the tests of `deploy/`
/// check the dashboard and the alert rules against this list).
pub const NAMES: [&str; 15] = [
    "otp_http_requests_total",
    "otp_http_request_duration_seconds",
    "otp_codes_sent_total",
    "otp_verifications_total",
    "otp_rate_limited_total",
    "otp_plugin_calls_total",
    "otp_plugin_call_duration_seconds",
    "otp_plugin_reloads_total",
    "otp_plugin_slots_in_use",
    "otp_store_errors_total",
    "otp_store_call_duration_seconds",
    "otp_kek_rotations_total",
    "otp_events_dropped_total",
    "otp_events_failed_total",
    "otp_events_delivered_total",
];

/// Histogram buckets (seconds): 0.25 ms to 10 s, enough for store calls and plugin sends.
const BUCKETS: [f64; 15] = [
    0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteStatus {
    route: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Route {
    route: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodeSent {
    channel: &'static str,
    kind: &'static str,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Outcome {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Limit {
    limit: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PluginCall {
    plugin: &'static str,
    hook: &'static str,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HookName {
    hook: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Op {
    op: &'static str,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

fn histogram() -> Histogram {
    Histogram::new(BUCKETS)
}

/// What a scrape reads from the server's state rather than from recorded events.
pub struct Scrape {
    /// Calls running now, per hook name.
    pub slots_in_use: Vec<(&'static str, u32)>,
    /// Audit events dropped since start-up (a full queue).
    pub events_dropped: u64,
    /// Audit events lost since start-up because the sink failed on their batch.
    pub events_failed: u64,
    /// Audit events the sink accepted since start-up.
    pub events_delivered: u64,
}

/// The metrics of this process.
pub struct Metrics {
    registry: Registry,
    http_requests: Family<RouteStatus, Counter>,
    http_duration: Histograms<Route>,
    codes_sent: Family<CodeSent, Counter>,
    verifications: Family<Outcome, Counter>,
    rate_limited: Family<Limit, Counter>,
    plugin_calls: Family<PluginCall, Counter>,
    plugin_duration: Histograms<HookName>,
    plugin_reloads: Family<Outcome, Counter>,
    plugin_slots: Family<HookName, Gauge>,
    store_errors: Family<Op, Counter>,
    store_duration: Histograms<Op>,
    kek_rotations: Counter,
    events_dropped: Counter,
    events_failed: Counter,
    events_delivered: Counter,
    /// Channel names used as label values so far.
    channels: Labels,
    /// Plugin names used as label values so far.
    plugins: Labels,
    /// Names as given, keys of the per-thread series caches.
    cache_keys: Labels,
}

/// Distinct channel label values at most.
pub const MAX_CHANNELS: usize = 32;
/// Distinct plugin label values at most.
pub const MAX_PLUGINS: usize = 256;
/// Distinct names (channels and plugins as given) the per-thread series caches keep.
pub const MAX_CACHED_NAMES: usize = 512;

/// Label values that come from names (channels, plugins), kept as `&'static str` so that a
/// lookup allocates nothing: each distinct name is leaked once, and at most `max` of them.
struct Labels {
    seen: RwLock<HashSet<&'static str>>,
    max: usize,
}

impl Labels {
    fn new(max: usize) -> Labels {
        Labels {
            seen: RwLock::new(HashSet::new()),
            max,
        }
    }

    /// `name` as a label value, or `other` once `max` names are in use.
    fn get(&self, name: &str) -> &'static str {
        if let Some(known) = self.seen.read().get(name) {
            return known;
        }
        let mut seen = self.seen.write();
        if let Some(known) = seen.get(name) {
            return known;
        }
        if seen.len() >= self.max {
            return "other";
        }
        let leaked: &'static str = Box::leak(name.to_string().into_boxed_str());
        seen.insert(leaked);
        leaked
    }
}

static INSTALLED: OnceLock<Metrics> = OnceLock::new();

/// The installed metrics, if any.
fn installed() -> Option<&'static Metrics> {
    INSTALLED.get()
}

/// Whether metrics are recorded (callers skip preparing label values otherwise).
pub fn enabled() -> bool {
    INSTALLED.get().is_some()
}

impl Metrics {
    fn new() -> Metrics {
        let mut m = Metrics {
            registry: Registry::default(),
            http_requests: Family::default(),
            http_duration: Family::new_with_constructor(histogram),
            codes_sent: Family::default(),
            verifications: Family::default(),
            rate_limited: Family::default(),
            plugin_calls: Family::default(),
            plugin_duration: Family::new_with_constructor(histogram),
            plugin_reloads: Family::default(),
            plugin_slots: Family::default(),
            store_errors: Family::default(),
            store_duration: Family::new_with_constructor(histogram),
            kek_rotations: Counter::default(),
            events_dropped: Counter::default(),
            events_failed: Counter::default(),
            events_delivered: Counter::default(),
            channels: Labels::new(MAX_CHANNELS),
            plugins: Labels::new(MAX_PLUGINS),
            cache_keys: Labels::new(MAX_CACHED_NAMES),
        };
        // Counters are registered without `_total`: the encoder appends it.
        let r = &mut m.registry;
        r.register(
            "otp_http_requests",
            "HTTP answers by route template and status",
            m.http_requests.clone(),
        );
        r.register(
            "otp_http_request_duration_seconds",
            "Time to answer an HTTP request, by route template",
            m.http_duration.clone(),
        );
        r.register(
            "otp_codes_sent",
            "Codes handed to the sending hook, by channel, kind (first, resend) and result",
            m.codes_sent.clone(),
        );
        r.register(
            "otp_verifications",
            "Verification attempts by result",
            m.verifications.clone(),
        );
        r.register(
            "otp_rate_limited",
            "Requests refused by an abuse limit, by limit",
            m.rate_limited.clone(),
        );
        r.register(
            "otp_plugin_calls",
            "Plugin calls by plugin, hook and result",
            m.plugin_calls.clone(),
        );
        r.register(
            "otp_plugin_call_duration_seconds",
            "Time of a plugin call, instantiation included, by hook",
            m.plugin_duration.clone(),
        );
        r.register(
            "otp_plugin_reloads",
            "Plugin files loaded (ok) or refused (rejected)",
            m.plugin_reloads.clone(),
        );
        r.register(
            "otp_plugin_slots_in_use",
            "Plugin calls running now, by hook",
            m.plugin_slots.clone(),
        );
        r.register(
            "otp_store_errors",
            "Failed session-store calls, by operation",
            m.store_errors.clone(),
        );
        r.register(
            "otp_store_call_duration_seconds",
            "Time of a session-store call, by operation",
            m.store_duration.clone(),
        );
        r.register(
            "otp_kek_rotations",
            "Times the current key-encryption key changed",
            m.kek_rotations.clone(),
        );
        r.register(
            "otp_events_dropped",
            "Audit events dropped because the queue was full",
            m.events_dropped.clone(),
        );
        r.register(
            "otp_events_failed",
            "Audit events lost because the events plugin failed on their batch",
            m.events_failed.clone(),
        );
        r.register(
            "otp_events_delivered",
            "Audit events the events plugin accepted",
            m.events_delivered.clone(),
        );
        m
    }

    /// Turns recording on for the whole process (once; later calls return the same
    /// metrics). Series that alerts divide by exist at 0 from here on.
    pub fn install() -> &'static Metrics {
        INSTALLED.get_or_init(|| {
            let m = Metrics::new();
            let _ = m.verifications.get_or_create(&Outcome { result: "ok" });
            for op in [
                "create", "extend", "replace", "consume", "contains", "charge", "settle",
            ] {
                let _ = m.store_errors.get_or_create(&Op { op });
            }
            m
        })
    }

    /// `name` as given, as a key of the per-thread series caches; `None` beyond
    /// [`MAX_CACHED_NAMES`] distinct names (their series are then looked up each time:
    /// correct, only slower).
    fn cached_name(&self, name: &str) -> Option<&'static str> {
        let key = self.cache_keys.get(name);
        (key == name).then_some(key)
    }

    /// `channel`, if it may be a label value, else `other`.
    fn channel_label(&self, channel: &str) -> &'static str {
        let word = (1..=32).contains(&channel.len())
            && channel
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if word {
            self.channels.get(channel)
        } else {
            "other"
        }
    }

    /// The OpenMetrics text of every metric, with `scrape`'s values read now.
    pub fn render(&self, scrape: &Scrape) -> String {
        for (hook, n) in &scrape.slots_in_use {
            self.plugin_slots
                .get_or_create(&HookName { hook })
                .set(i64::from(*n));
        }
        // Monotonic and atomic, so concurrent scrapes cannot add the same events twice.
        for (counter, total) in [
            (&self.events_dropped, scrape.events_dropped),
            (&self.events_failed, scrape.events_failed),
            (&self.events_delivered, scrape.events_delivered),
        ] {
            counter
                .inner()
                .fetch_max(total, std::sync::atomic::Ordering::Relaxed);
        }
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String cannot fail");
        text
    }
}

/// The content type of [`Metrics::render`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// One HTTP answer: its route template (or `unmatched`), status and duration.
pub fn http_request(route: &'static str, status: u16, elapsed: Duration) {
    if let Some(m) = installed() {
        // Every request lands here: the series handles are kept per thread, so a request
        // takes no family lock (whose shared lock word both worker threads would bounce).
        HTTP_SERIES.with(|series| {
            let mut series = series.borrow_mut();
            let known = series
                .iter()
                .position(|(r, s, _, _)| *s == status && *r == route);
            let at = known.unwrap_or_else(|| {
                let counter = m
                    .http_requests
                    .get_or_create(&RouteStatus { route, status })
                    .clone();
                let histogram = m.http_duration.get_or_create(&Route { route }).clone();
                series.push((route, status, counter, histogram));
                series.len() - 1
            });
            let (_, _, counter, histogram) = &series[at];
            counter.inc();
            histogram.observe(elapsed.as_secs_f64());
        });
    }
}

thread_local! {
    /// This thread's handles of the HTTP series: route template, status, answers, time.
    /// Bounded: route templates and statuses are a small fixed set.
    static HTTP_SERIES: RefCell<Vec<(&'static str, u16, Counter, Histogram)>> =
        const { RefCell::new(Vec::new()) };
    /// This thread's handles of the code series: channel as given, kind, result, count.
    /// Bounded: [`MAX_CACHED_NAMES`] names, fixed kinds and results.
    static CODE_SERIES: RefCell<Vec<(&'static str, &'static str, &'static str, Counter)>> =
        const { RefCell::new(Vec::new()) };
    /// This thread's handles of the plugin-call series: plugin as given, hook, result,
    /// count, time. Bounded: [`MAX_CACHED_NAMES`] names, fixed hooks and results.
    static PLUGIN_SERIES: RefCell<Vec<PluginSeries>> = const { RefCell::new(Vec::new()) };
}

type PluginSeries = (&'static str, &'static str, &'static str, Counter, Histogram);

/// A code handed to the sending hook: `kind` is `first` or `resend`, `result` `ok` or
/// the failure's kind. Channels are what validators name; a channel that is not a short
/// lower-case word, or beyond the first [`MAX_CHANNELS`], is counted as `other`.
pub fn code_sent(channel: &str, kind: &'static str, result: &'static str) {
    if let Some(m) = installed() {
        CODE_SERIES.with(|series| {
            let mut series = series.borrow_mut();
            if let Some((.., counter)) = series
                .iter()
                .find(|(c, k, r, _)| *k == kind && *r == result && *c == channel)
            {
                counter.inc();
                return;
            }
            let counter = m
                .codes_sent
                .get_or_create(&CodeSent {
                    channel: m.channel_label(channel),
                    kind,
                    result,
                })
                .clone();
            counter.inc();
            if let Some(key) = m.cached_name(channel) {
                series.push((key, kind, result, counter));
            }
        });
    }
}

/// A verification attempt and how it ended (`ok`, `incorrect`, `expired`, …).
pub fn verification(result: &'static str) {
    if let Some(m) = installed() {
        m.verifications.get_or_create(&Outcome { result }).inc();
    }
}

/// A request refused by the limit named `limit` (a fixed name, never the limited key).
pub fn rate_limited(limit: &'static str) {
    if let Some(m) = installed() {
        m.rate_limited.get_or_create(&Limit { limit }).inc();
    }
}

/// `name` as an OpenMetrics label value: `\`, `"` and line feeds escaped (the encoder
/// writes label values as given, and one bad line makes Prometheus refuse the whole
/// scrape). Plugin names come from file names, which may hold any of them.
fn label_value(name: &str) -> std::borrow::Cow<'_, str> {
    if !name.contains(['\\', '"', '\n']) {
        return std::borrow::Cow::Borrowed(name);
    }
    let mut escaped = String::with_capacity(name.len() + 8);
    for c in name.chars() {
        match c {
            '\\' => escaped.push_str("\\\\"),
            '"' => escaped.push_str("\\\""),
            '\n' => escaped.push_str("\\n"),
            c => escaped.push(c),
        }
    }
    std::borrow::Cow::Owned(escaped)
}

/// One plugin call: which plugin, which hook, how it ended, how long it took.
pub fn plugin_call(plugin: &str, hook: &'static str, result: &'static str, elapsed: Duration) {
    if let Some(m) = installed() {
        PLUGIN_SERIES.with(|series| {
            let mut series = series.borrow_mut();
            if let Some((.., counter, histogram)) = series
                .iter()
                .find(|(p, h, r, _, _)| *h == hook && *r == result && *p == plugin)
            {
                counter.inc();
                histogram.observe(elapsed.as_secs_f64());
                return;
            }
            let counter = m
                .plugin_calls
                .get_or_create(&PluginCall {
                    plugin: m.plugins.get(&label_value(plugin)),
                    hook,
                    result,
                })
                .clone();
            let histogram = m.plugin_duration.get_or_create(&HookName { hook }).clone();
            counter.inc();
            histogram.observe(elapsed.as_secs_f64());
            if let Some(key) = m.cached_name(plugin) {
                series.push((key, hook, result, counter, histogram));
            }
        });
    }
}

/// A plugin file loaded (`ok`) or refused (`rejected`).
pub fn plugin_reload(result: &'static str) {
    if let Some(m) = installed() {
        m.plugin_reloads.get_or_create(&Outcome { result }).inc();
    }
}

/// One session-store call: its operation, duration and whether it failed.
pub fn store_call(op: &'static str, elapsed: Duration, failed: bool) {
    if let Some(m) = installed() {
        m.store_duration
            .get_or_create(&Op { op })
            .observe(elapsed.as_secs_f64());
        if failed {
            m.store_errors.get_or_create(&Op { op }).inc();
        }
    }
}

/// The current key-encryption key changed (scheduled, requested, or adopted from another
/// instance).
pub fn kek_rotated() {
    if let Some(m) = installed() {
        m.kek_rotations.inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_values_render_under_the_documented_names() {
        let m = Metrics::install();
        // Label values no other test in this process records.
        http_request("/test/metrics", 200, Duration::from_millis(3));
        http_request("/test/metrics", 200, Duration::from_millis(4));
        rate_limited("test_limit");
        store_call("test_op", Duration::from_micros(200), true);
        // Repeated calls go through the per-thread caches.
        for _ in 0..3 {
            plugin_call("test-plugin", "sending", "ok", Duration::from_micros(50));
        }
        plugin_call("odd\"name\\\n", "sending", "ok", Duration::from_micros(50));
        code_sent("test-channel", "first", "ok");
        code_sent("test-channel", "first", "ok");
        verification("test_result");
        plugin_reload("test_result");
        let text = m.render(&Scrape {
            slots_in_use: vec![("sending", 3)],
            events_dropped: 7,
            events_failed: 5,
            events_delivered: 11,
        });
        for line in [
            r#"otp_http_requests_total{route="/test/metrics",status="200"} 2"#,
            r#"otp_http_request_duration_seconds_bucket{le="0.005",route="/test/metrics"} 2"#,
            r#"otp_rate_limited_total{limit="test_limit"} 1"#,
            r#"otp_store_errors_total{op="test_op"} 1"#,
            r#"otp_store_errors_total{op="consume"} 0"#,
            r#"otp_plugin_calls_total{plugin="test-plugin",hook="sending",result="ok"} 3"#,
            r#"otp_plugin_calls_total{plugin="odd\"name\\\n",hook="sending",result="ok"} 1"#,
            r#"otp_codes_sent_total{channel="test-channel",kind="first",result="ok"} 2"#,
            r#"otp_plugin_slots_in_use{hook="sending"} 3"#,
            "otp_events_dropped_total 7",
            "otp_events_failed_total 5",
            "otp_events_delivered_total 11",
            "otp_kek_rotations_total 0",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
        // Every documented name is in a scrape, and nothing else is.
        let families: std::collections::BTreeSet<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split(' ').next())
            .collect();
        for name in NAMES {
            let family = name.strip_suffix("_total").unwrap_or(name);
            assert!(families.contains(family), "{name} not in\n{text}");
        }
        assert_eq!(families.len(), NAMES.len(), "{families:?}");
    }

    #[test]
    fn name_labels_are_bounded_and_odd_channels_are_other() {
        let labels = Labels::new(2);
        assert_eq!(labels.get("a"), "a");
        assert_eq!(labels.get("b"), "b");
        assert_eq!(labels.get("a"), "a");
        assert_eq!(labels.get("c"), "other", "a third name is over the bound");
        let m = Metrics::install();
        for odd in ["Me@Example.com", "", "+441234567890", &"x".repeat(33)] {
            assert_eq!(m.channel_label(odd), "other", "{odd:?}");
        }
        assert_eq!(m.channel_label("sms"), "sms");
    }

    #[test]
    fn names_follow_the_conventions() {
        for name in NAMES {
            assert!(name.starts_with("otp_"), "{name}");
            let counter = name.ends_with("_total");
            let seconds = name.ends_with("_seconds");
            assert!(
                counter || seconds || name == "otp_plugin_slots_in_use",
                "{name}"
            );
        }
    }
}
