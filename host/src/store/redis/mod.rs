//! Redis as the shared store of several otp-server instances: single-use session ids
//! ([`RedisIdStore`]) and key-encryption keys wrapped by the master key
//! ([`RedisKeyStore`]).
//!
//! One [`RedisConnection`] per instance, whatever the deployment: one Redis (redis-rs's
//! `ConnectionManager`, which reconnects by itself), a Redis Cluster (redis-rs's async
//! cluster client, which follows `MOVED`/`ASK` and refreshes its slot map after a
//! failover) or a master found through Sentinel ([`SentinelLink`]: asks the Sentinels
//! again whenever the master stops answering or turns read-only). Callers do not see
//! which: they get a [`Link`] that speaks redis-rs's `ConnectionLike`. Every call runs
//! under the store timeout, so when Redis is unreachable (or failing over) the OTP
//! endpoints fail fast with 503 `STORE:UNAVAILABLE` and recover on their own.
//!
//! Key layout (all under the configured prefix, default `otp:`). Every command and every
//! script touches keys of one hash slot only, so all of it works on a Redis Cluster:
//! - `PREFIX s:{TAG}:REST` — a live session id (value `1`, TTL = the session's life).
//!   `TAG` is the first 4 bytes of the id in hex, kept by every successor id of a
//!   session, so the old and new key of an atomic `replace` share a hash slot. A new
//!   session's tag is random, or `000078a8` (the limiter's slot, that of `{lim}`) while
//!   the abuse controls are on ([`IdPlacement`]). The limiter's charge script writes
//!   these keys too ([`id_key`]) — on one server always, on a Cluster for ids in its
//!   slot — so a request the limits charge changes its id in the same round trip.
//! - `PREFIX kek:{keys}:ID` — a KEK sealed with the master key (AES-256-GCM, its id and
//!   creation time authenticated), expiring once no cookie can still use it.
//! - `PREFIX kek:{keys}:current` — the id of the KEK every instance seals with.
//! - `PREFIX kek:{keys}:index` — sorted set of stored KEK ids (score: expiry), for
//!   `otp-server keys rewrap`.
//! - `PREFIX kek:{keys}:revoked` — sorted set of revoked KEK ids (score: revocation
//!   time), which every instance drops from its ring at its next maintenance tick.
//! - `PREFIX kek:{keys}:rotating` — a short lock so one instance rotates or repairs.
//!
//! Nothing stored reveals a credential, a code or a usable key.

mod ids;
mod keys;
mod url;

pub use ids::{
    has_limiter_tag, id_key, limiter_tag_shares_slot, IdPlacement, RedisIdStore, LIMITER_KEY_PREFIX,
};
pub use keys::{KeyStoreError, RedisKeyStore, RotationReport, WhenEmpty};
pub use url::{RedisTarget, UrlError, URL_FORMS};

use super::StoreError;
use arc_swap::ArcSwapOption;
use redis::aio::{
    ConnectionLike, ConnectionManager, ConnectionManagerConfig, MultiplexedConnection,
};
use redis::cluster_async::ClusterConnection;
use redis::sentinel::SentinelClient;
use redis::{Cmd, Pipeline, RedisFuture, Value};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use url::SentinelTarget;

/// A connection to Redis shared by the id store and the key store.
#[derive(Clone)]
pub struct RedisConnection {
    kind: Kind,
    prefix: String,
    timeout: Duration,
}

#[derive(Clone)]
enum Kind {
    Single(ConnectionManager),
    Cluster(Arc<Lazy<ClusterConnection>>),
    Sentinel(Arc<SentinelLink>),
}

/// What one operation talks to: a handle onto the instance's connection (cheap to
/// clone, multiplexed underneath).
#[derive(Clone)]
pub enum Link {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
    Sentinel(MultiplexedConnection),
}

impl ConnectionLike for Link {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Link::Single(c) => c.req_packed_command(cmd),
            Link::Cluster(c) => c.req_packed_command(cmd),
            Link::Sentinel(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Link::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Link::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
            Link::Sentinel(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Link::Single(c) => c.get_db(),
            Link::Cluster(c) => c.get_db(),
            Link::Sentinel(c) => c.get_db(),
        }
    }
}

impl RedisConnection {
    /// Prepares a connection to `url` (any form [`RedisTarget`] accepts). Connecting
    /// happens lazily, so the server starts even while Redis is down.
    pub fn new(url: &str, prefix: &str, timeout: Duration) -> Result<RedisConnection, StoreError> {
        let target = RedisTarget::parse(url)
            .map_err(|e| StoreError::Unavailable(format!("invalid Redis URL: {e}")))?;
        let kind = match target {
            RedisTarget::Single(url) => {
                let client = redis::Client::open(url)
                    .map_err(|e| StoreError::Unavailable(format!("invalid Redis URL: {e}")))?;
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(timeout))
                    .set_response_timeout(Some(timeout))
                    .set_number_of_retries(1)
                    .set_max_delay(Duration::from_millis(500));
                Kind::Single(
                    ConnectionManager::new_lazy_with_config(client, config)
                        .map_err(|e| StoreError::Unavailable(format!("Redis: {e}")))?,
                )
            }
            RedisTarget::Cluster { nodes } => {
                let client = redis::cluster::ClusterClientBuilder::new(nodes)
                    .connection_timeout(timeout)
                    .response_timeout(timeout)
                    // Retries (after MOVED, a refused connection, a failover) happen
                    // inside the store timeout; waits stay short so a retry can land.
                    .retries(3)
                    .min_retry_wait(20)
                    .max_retry_wait(200)
                    .build()
                    .map_err(|e| StoreError::Unavailable(format!("invalid Redis URL: {e}")))?;
                Kind::Cluster(Arc::new(Lazy::new(Box::new(move || {
                    let client = client.clone();
                    Box::pin(async move { client.get_async_connection().await })
                }))))
            }
            RedisTarget::Sentinel(target) => {
                Kind::Sentinel(Arc::new(SentinelLink::new(target, timeout)?))
            }
        };
        Ok(RedisConnection {
            kind,
            prefix: prefix.to_string(),
            timeout,
        })
    }

    pub fn key(&self, suffix: &str) -> String {
        format!("{}{suffix}", self.prefix)
    }

    /// Whether every key is on one server, so one script may touch keys of different
    /// hash slots (one Redis, or a Sentinel-managed master; not a Cluster).
    pub fn is_one_server(&self) -> bool {
        !matches!(self.kind, Kind::Cluster(_))
    }

    /// The connection of this instance, connecting first if needed.
    async fn link(&self) -> redis::RedisResult<(Link, u64)> {
        match &self.kind {
            Kind::Single(manager) => Ok((Link::Single(manager.clone()), 0)),
            Kind::Cluster(lazy) => {
                let (generation, connection) = lazy.get().await?;
                Ok((Link::Cluster(connection), generation))
            }
            Kind::Sentinel(sentinel) => {
                let (generation, connection) = sentinel.get().await?;
                Ok((Link::Sentinel(connection), generation))
            }
        }
    }

    /// A failed or timed-out call on a Sentinel master: ask the Sentinels again next time
    /// (the master may have failed over). Cluster and single connections heal themselves.
    fn suspect(&self, generation: u64) {
        if let Kind::Sentinel(sentinel) = &self.kind {
            sentinel.link.forget(generation);
        }
    }

    /// Runs one Redis operation under the store timeout.
    pub async fn run<T, F, Fut>(&self, operation: F) -> Result<T, StoreError>
    where
        F: FnOnce(Link) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let generation = AtomicU64::new(u64::MAX);
        let work = async {
            let (link, current) = self.link().await?;
            generation.store(current, Ordering::Relaxed);
            operation(link).await
        };
        match tokio::time::timeout(self.timeout, work).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => {
                if error.is_io_error()
                    || error.is_connection_dropped()
                    || error.is_unrecoverable_error()
                    || error.code() == Some("READONLY")
                {
                    self.suspect(generation.load(Ordering::Relaxed));
                }
                Err(StoreError::Unavailable(format!("Redis: {error}")))
            }
            Err(_) => {
                self.suspect(generation.load(Ordering::Relaxed));
                Err(StoreError::Unavailable(
                    "Redis did not answer in time".into(),
                ))
            }
        }
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        self.run(|mut c| async move { redis::cmd("PING").query_async::<String>(&mut c).await })
            .await
            .map(|_| ())
    }
}

type Connect<C> = Box<
    dyn Fn() -> std::pin::Pin<Box<dyn Future<Output = redis::RedisResult<C>> + Send>> + Send + Sync,
>;

/// A connection made on first use and made again after [`Lazy::forget`]. One task
/// connects at a time; the others wait for its result.
struct Lazy<C> {
    current: ArcSwapOption<(u64, C)>,
    connecting: tokio::sync::Mutex<u64>,
    connect: Connect<C>,
}

impl<C: Clone> Lazy<C> {
    fn new(connect: Connect<C>) -> Lazy<C> {
        Lazy {
            current: ArcSwapOption::empty(),
            connecting: tokio::sync::Mutex::new(0),
            connect,
        }
    }

    async fn get(&self) -> redis::RedisResult<(u64, C)> {
        if let Some(current) = self.current.load_full() {
            return Ok((current.0, current.1.clone()));
        }
        let mut generation = self.connecting.lock().await;
        if let Some(current) = self.current.load_full() {
            return Ok((current.0, current.1.clone()));
        }
        let connection = (self.connect)().await?;
        *generation += 1;
        self.current
            .store(Some(Arc::new((*generation, connection.clone()))));
        Ok((*generation, connection))
    }

    /// Drops the connection of `generation` (not a newer one made since).
    fn forget(&self, generation: u64) {
        let current = self.current.load();
        if current.as_ref().is_some_and(|c| c.0 == generation) {
            self.current.compare_and_swap(&*current, None);
        }
    }
}

/// The master of a Sentinel-managed Redis: asked from the Sentinels on first use and
/// whenever a call on it fails, so a failover is followed within one store timeout.
struct SentinelLink {
    link: Lazy<MultiplexedConnection>,
}

impl SentinelLink {
    fn new(target: SentinelTarget, timeout: Duration) -> Result<SentinelLink, StoreError> {
        use redis::sentinel::{SentinelClientBuilder, SentinelServerType};
        use redis::{ConnectionAddr, TlsMode};
        let addresses = target.sentinels.iter().map(|(host, port)| {
            if target.tls {
                ConnectionAddr::TcpTls {
                    host: host.clone(),
                    port: *port,
                    insecure: false,
                    tls_params: None,
                }
            } else {
                ConnectionAddr::Tcp(host.clone(), *port)
            }
        });
        let mut builder =
            SentinelClientBuilder::new(addresses, &target.master, SentinelServerType::Master)
                .map_err(|e| StoreError::Unavailable(format!("invalid Sentinel URL: {e}")))?
                .set_client_to_redis_db(target.db);
        if target.tls {
            builder = builder
                .set_client_to_redis_tls_mode(TlsMode::Secure)
                .set_client_to_sentinel_tls_mode(TlsMode::Secure);
        }
        if let Some(user) = &target.username {
            builder = builder.set_client_to_redis_username(user);
        }
        if let Some(password) = &target.password {
            builder = builder.set_client_to_redis_password(password);
        }
        let client: Arc<tokio::sync::Mutex<SentinelClient>> =
            Arc::new(tokio::sync::Mutex::new(builder.build().map_err(|e| {
                StoreError::Unavailable(format!("invalid Sentinel URL: {e}"))
            })?));
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout));
        Ok(SentinelLink {
            link: Lazy::new(Box::new(move || {
                let (client, config) = (client.clone(), config.clone());
                Box::pin(async move {
                    let master = client.lock().await.async_get_client().await?;
                    master
                        .get_multiplexed_async_connection_with_config(&config)
                        .await
                })
            })),
        })
    }

    async fn get(&self) -> redis::RedisResult<(u64, MultiplexedConnection)> {
        self.link.get().await
    }
}
