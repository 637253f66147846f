//! The etcd store: typed get/list, create-if-absent, update-if-version,
//! delete-if-version, read-modify-write, fenced writes for the elected
//! coordinator, with every unary call under a deadline and transient errors
//! retried. Owns the connection (TLS, auth, keepalive); watch, lease and lock
//! build on the client it hands out.
//!
//! Versions are etcd `mod_revision`s: a record read at version `v` can be
//! replaced only while its `mod_revision` is still `v`.
//!
//! A retried write is ambiguous when the first attempt timed out after etcd had
//! applied it: the retry then reports `NodeExists`/`BadVersion` for a write that
//! landed. Callers of conditional writes already handle those by re-reading.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder, Retryable};
use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, DeleteOptions, GetOptions, Identity,
    KeyValue, PutOptions, TlsOptions, Txn, TxnOp, TxnOpResponse, TxnResponse,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tracing::warn;

use crate::error::{Result, TopoError};
use crate::keys::Keys;
use crate::lock::Fence;

/// Keys per page of a list.
pub const LIST_PAGE: i64 = 2000;

/// The end of the key range covering every key that starts with `prefix`.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // All 0xff (or empty): to the end of the keyspace.
    vec![0]
}

/// A record together with the version (etcd mod_revision) it was read at.
#[derive(Debug, Clone, PartialEq)]
pub struct Versioned<T> {
    /// The decoded record.
    pub value: T,
    /// etcd `mod_revision` of the key; the version for CAS.
    pub version: i64,
}

/// How to reach etcd (the contract's global `--topo-*` flags).
#[derive(Debug, Clone)]
pub struct TopoConfig {
    /// `host:port` endpoints (scheme added: `https` when a CA is given).
    pub endpoints: Vec<String>,
    /// `--topo-root`.
    pub root: String,
    /// `--topo-cacert`: CA that signed the etcd server certificate; turns on TLS.
    pub ca_file: Option<PathBuf>,
    /// `--topo-cert`: client certificate for mutual TLS.
    pub cert_file: Option<PathBuf>,
    /// `--topo-key`: private key of `cert_file`.
    pub key_file: Option<PathBuf>,
    /// `--topo-user`: etcd auth user.
    pub user: Option<String>,
    /// `--topo-password-file`: file holding the password of `user`.
    pub password_file: Option<PathBuf>,
    /// Deadline of each unary call.
    pub request_timeout: Duration,
    /// Deadline of establishing a connection.
    pub connect_timeout: Duration,
}

impl Default for TopoConfig {
    fn default() -> Self {
        Self {
            endpoints: vec!["127.0.0.1:2379".into()],
            root: "/cairn".into(),
            ca_file: None,
            cert_file: None,
            key_file: None,
            user: None,
            password_file: None,
            request_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(3),
        }
    }
}

/// HTTP/2 ping interval: a frozen or vanished server is noticed within
/// interval + timeout, which ends blocked streams (watch, keepalive) with an error.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(1);
/// How long an HTTP/2 ping may go unanswered before the connection is dropped.
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(2);
/// Attempts of a unary call on transient errors (the first included).
const UNARY_ATTEMPTS: usize = 4;
/// Attempts of a read-modify-write that keeps losing races.
const UPDATE_WITH_ATTEMPTS: usize = 20;

/// The topology store. Cheap to clone.
#[derive(Clone)]
pub struct Topo {
    /// Key layout under the configured root.
    keys: Keys,
    /// The etcd client; cloning it shares the connection.
    client: Client,
    /// Deadline of each unary call (there is no client-wide timeout, so that
    /// watches and blocking waits are not cut short).
    request_timeout: Duration,
    /// The endpoints as given, for log lines.
    endpoints: Arc<str>,
}

/// The backoff of long-lived reconnect loops: jittered, 200ms doubling to 5s,
/// never giving up.
pub(crate) fn reconnect_backoff() -> backon::ExponentialBackoff {
    ExponentialBuilder::default()
        .with_jitter()
        .with_min_delay(Duration::from_millis(200))
        .with_max_delay(Duration::from_secs(5))
        .without_max_times()
        .build()
}

/// The next delay of a reconnect backoff (never exhausted; the fallback only
/// keeps the type honest).
pub(crate) fn next_delay(b: &mut backon::ExponentialBackoff) -> Duration {
    b.next().unwrap_or(Duration::from_secs(5))
}

/// Maps etcd's "requested lease not found" to [`TopoError::LeaseNotFound`], so
/// an owner learns its lease is gone instead of seeing a generic etcd error.
pub(crate) fn map_lease_error(e: etcd_client::Error, lease: Option<i64>) -> TopoError {
    if let (Some(id), etcd_client::Error::GRpcStatus(s)) = (lease, &e) {
        if s.code() == tonic::Code::NotFound && s.message().contains("lease not found") {
            return TopoError::LeaseNotFound(id);
        }
    }
    TopoError::Etcd(e)
}

/// The key of an etcd key-value as text (keys are always written from `&str`
/// here; anything else is shown lossily rather than failing).
pub(crate) fn key_string(kv: &KeyValue) -> String {
    String::from_utf8_lossy(kv.key()).into_owned()
}

/// What must hold of the target key for a conditional write.
#[derive(Debug, Clone, Copy)]
enum Cond {
    /// The key does not exist.
    Absent,
    /// The key's mod_revision is this (0 = absent).
    ModRev(i64),
    /// No condition on the key (a fence may still apply).
    Any,
}

/// The write of a conditional transaction.
#[derive(Debug, Clone)]
enum Write {
    /// Put this value, attached to the lease if given.
    Put(Vec<u8>, Option<i64>),
    /// Delete the key.
    Delete,
}

/// Reads the password file, dropping the trailing newline editors add.
fn read_password(path: &Path) -> Result<String> {
    let raw = std::fs::read_to_string(path).map_err(|e| {
        TopoError::Config(format!(
            "cannot read topo password file {}: {e}",
            path.display()
        ))
    })?;
    Ok(raw.trim_end_matches(['\n', '\r']).to_string())
}

/// Reads a PEM file for TLS.
fn read_pem(what: &str, path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path)
        .map_err(|e| TopoError::Config(format!("cannot read {what} {}: {e}", path.display())))
}

/// Endpoints with their scheme: `https` when TLS is configured. An endpoint that
/// already names a scheme is kept as written.
fn endpoint_urls(cfg: &TopoConfig) -> Result<Vec<String>> {
    let scheme = if cfg.ca_file.is_some() {
        "https"
    } else {
        "http"
    };
    let urls: Vec<String> = cfg
        .endpoints
        .iter()
        .map(|e| e.trim())
        .filter(|e| !e.is_empty())
        .map(|e| {
            if e.contains("://") {
                e.to_string()
            } else {
                format!("{scheme}://{e}")
            }
        })
        .collect();
    if urls.is_empty() {
        return Err(TopoError::Config("no topo server endpoints given".into()));
    }
    Ok(urls)
}

/// Connection options from the config: keepalive so a frozen server is noticed,
/// a connect timeout, TLS and auth. No request timeout: see [`Topo`].
fn connect_options(cfg: &TopoConfig) -> Result<ConnectOptions> {
    let mut opts = ConnectOptions::new()
        .with_keep_alive(KEEPALIVE_INTERVAL, KEEPALIVE_TIMEOUT)
        .with_keep_alive_while_idle(true)
        .with_connect_timeout(cfg.connect_timeout)
        .with_tcp_keepalive(Duration::from_secs(10));
    match (&cfg.cert_file, &cfg.key_file) {
        (Some(_), None) | (None, Some(_)) => {
            return Err(TopoError::Config(
                "--topo-cert and --topo-key must be given together".into(),
            ))
        }
        (Some(_), Some(_)) if cfg.ca_file.is_none() => {
            return Err(TopoError::Config(
                "--topo-cert/--topo-key need --topo-cacert (TLS is on only with a CA)".into(),
            ))
        }
        _ => {}
    }
    if let Some(ca) = &cfg.ca_file {
        let mut tls = TlsOptions::new()
            .ca_certificate(Certificate::from_pem(read_pem("topo CA certificate", ca)?));
        if let (Some(cert), Some(key)) = (&cfg.cert_file, &cfg.key_file) {
            tls = tls.identity(Identity::from_pem(
                read_pem("topo client certificate", cert)?,
                read_pem("topo client key", key)?,
            ));
        }
        opts = opts.with_tls(tls);
    }
    match (&cfg.user, &cfg.password_file) {
        (Some(user), Some(pw)) => {
            opts = opts
                .with_user(user.clone(), read_password(pw)?)
                .with_auto_token_refresh(true);
        }
        (Some(_), None) => {
            return Err(TopoError::Config(
                "--topo-user needs --topo-password-file".into(),
            ))
        }
        (None, Some(_)) => {
            return Err(TopoError::Config(
                "--topo-password-file needs --topo-user".into(),
            ))
        }
        (None, None) => {}
    }
    Ok(opts)
}

/// Runs one etcd call under a deadline.
pub(crate) async fn with_timeout<T, F>(d: Duration, what: &str, fut: F) -> Result<T>
where
    F: Future<Output = Result<T>>,
{
    match tokio::time::timeout(d, fut).await {
        Ok(r) => r,
        Err(_) => Err(TopoError::Timeout(format!(
            "{what}: no answer within {d:?}"
        ))),
    }
}

impl Topo {
    /// Connects (retrying transient failures with a logged, jittered backoff until
    /// `give_up_after`, or forever when `None`). Reachability is proven with a
    /// real request, since the client connects lazily.
    pub async fn connect(cfg: &TopoConfig, give_up_after: Option<Duration>) -> Result<Topo> {
        let opts = connect_options(cfg)?;
        let urls = endpoint_urls(cfg)?;
        let endpoints: Arc<str> = cfg.endpoints.join(",").into();
        let started = Instant::now();
        let mut backoff = reconnect_backoff();
        loop {
            let attempt = async {
                let client = with_timeout(
                    cfg.connect_timeout + cfg.request_timeout,
                    "connect",
                    async { Ok(Client::connect(&urls, Some(opts.clone())).await?) },
                )
                .await?;
                let mut probe = client.clone();
                with_timeout(cfg.request_timeout, "status", async {
                    Ok(probe.status().await?)
                })
                .await?;
                Ok::<_, TopoError>(client)
            };
            match attempt.await {
                Ok(client) => {
                    return Ok(Topo {
                        keys: Keys::new(&cfg.root),
                        client,
                        request_timeout: cfg.request_timeout,
                        endpoints,
                    })
                }
                Err(e) if e.is_transient() => {
                    let delay = next_delay(&mut backoff);
                    if let Some(limit) = give_up_after {
                        if started.elapsed() + delay > limit {
                            return Err(TopoError::Timeout(format!(
                                "etcd not reachable at {endpoints} within {limit:?}: {e}"
                            )));
                        }
                    }
                    warn!("etcd not reachable at {endpoints}: {e}; retrying in {delay:?}");
                    tokio::time::sleep(delay).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// Raw etcd client for the modules of this crate (watch, lease, lock).
    pub fn client(&self) -> etcd_client::Client {
        self.client.clone()
    }

    /// Deadline of each unary call.
    pub fn request_timeout(&self) -> Duration {
        self.request_timeout
    }

    /// The endpoints as configured (for log lines).
    pub fn endpoints(&self) -> &str {
        &self.endpoints
    }

    /// Runs a unary call under the request deadline, retrying transient errors a
    /// few times with a jittered, logged backoff. Typed errors are returned at once.
    pub(crate) async fn call<T, F, Fut>(&self, what: &str, mut f: F) -> Result<T>
    where
        F: FnMut(Client) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let d = self.request_timeout;
        let attempt = || with_timeout(d, what, f(self.client.clone()));
        attempt
            .retry(
                ExponentialBuilder::default()
                    .with_jitter()
                    .with_min_delay(Duration::from_millis(100))
                    .with_max_delay(Duration::from_secs(1))
                    .with_max_times(UNARY_ATTEMPTS - 1),
            )
            .sleep(tokio::time::sleep)
            .when(|e: &TopoError| e.is_transient())
            .notify(|e: &TopoError, d: Duration| {
                warn!("etcd {what} failed: {e}; retrying in {d:?}");
            })
            .await
    }

    /// Raw get of one key: (value, mod_revision) and the store revision it was read at.
    pub async fn get_raw(&self, key: &str) -> Result<(Option<(Vec<u8>, i64)>, i64)> {
        let mut resp = self
            .call("get", |mut c| {
                let key = key.to_string();
                async move { Ok(c.get(key, None).await?) }
            })
            .await?;
        let rev = resp.header().map(|h| h.revision()).unwrap_or(0);
        let kv = resp.take_kvs().into_iter().next().map(|kv| {
            let m = kv.mod_revision();
            (kv.into_key_value().1, m)
        });
        Ok((kv, rev))
    }

    /// Raw list of a prefix sorted by key: (key, value, mod_revision) and the store
    /// revision it was read at (watch from revision + 1 to miss nothing). Read in
    /// pages of [`LIST_PAGE`] keys, all at the first page's revision, so a large
    /// topology (10,000 tablets) neither exceeds the gRPC message limit nor is
    /// read inconsistently.
    pub async fn list_raw(&self, prefix: &str) -> Result<(Vec<(String, Vec<u8>, i64)>, i64)> {
        let end = prefix_end(prefix.as_bytes());
        let mut out = Vec::new();
        let mut from: Vec<u8> = prefix.as_bytes().to_vec();
        let mut rev = 0i64;
        loop {
            let mut resp = self
                .call("list", |mut c| {
                    let (from, end) = (from.clone(), end.clone());
                    async move {
                        let mut opts = GetOptions::new().with_range(end).with_limit(LIST_PAGE);
                        if rev > 0 {
                            opts = opts.with_revision(rev);
                        }
                        Ok(c.get(from, Some(opts)).await?)
                    }
                })
                .await?;
            if rev == 0 {
                rev = resp.header().map(|h| h.revision()).unwrap_or(0);
            }
            let more = resp.more();
            let kvs = resp.take_kvs();
            let last = kvs.last().map(|kv| kv.key().to_vec());
            for kv in kvs {
                let m = kv.mod_revision();
                let (k, v) = kv.into_key_value();
                out.push((String::from_utf8_lossy(&k).into_owned(), v, m));
            }
            match (more, last) {
                (true, Some(mut last)) => {
                    last.push(0);
                    from = last;
                }
                _ => break,
            }
        }
        Ok((out, rev))
    }

    /// Typed get; `Ok(None)` when absent; `BadRecord` when it does not parse.
    pub async fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<Versioned<T>>> {
        Ok(self.get_with_revision(key).await?.0)
    }

    /// Typed get plus the store revision it was read at: watch from revision + 1
    /// to see every later change.
    pub async fn get_with_revision<T: DeserializeOwned>(
        &self,
        key: &str,
    ) -> Result<(Option<Versioned<T>>, i64)> {
        let (kv, rev) = self.get_raw(key).await?;
        let rec = match kv {
            None => None,
            Some((bytes, version)) => Some(Versioned {
                value: decode(key, &bytes)?,
                version,
            }),
        };
        Ok((rec, rev))
    }

    /// Typed list of a prefix, sorted by key. Records that do not parse are logged
    /// (warn, with the key) and skipped.
    pub async fn list<T: DeserializeOwned>(
        &self,
        prefix: &str,
    ) -> Result<Vec<(String, Versioned<T>)>> {
        Ok(self.list_with_revision(prefix).await?.0)
    }

    /// [`Topo::list`] plus the store revision it was read at.
    pub async fn list_with_revision<T: DeserializeOwned>(
        &self,
        prefix: &str,
    ) -> Result<(Vec<(String, Versioned<T>)>, i64)> {
        let (kvs, rev) = self.list_raw(prefix).await?;
        let mut out = Vec::with_capacity(kvs.len());
        for (key, bytes, version) in kvs {
            match decode::<T>(&key, &bytes) {
                Ok(value) => out.push((key, Versioned { value, version })),
                Err(e) => warn!("skipping unreadable topo record: {e}"),
            }
        }
        Ok((out, rev))
    }

    /// Creates the key if absent (`NodeExists` otherwise); with a lease if given.
    pub async fn create<T: Serialize>(
        &self,
        key: &str,
        value: &T,
        lease: Option<i64>,
    ) -> Result<i64> {
        let bytes = encode(key, value)?;
        self.cas(key, Cond::Absent, Write::Put(bytes, lease), None)
            .await
    }

    /// Updates the key if its version is still `version` (`BadVersion` if changed,
    /// `NoNode` if gone). Returns the new version. The key keeps its lease, if
    /// any. Version 0 means "only if absent".
    pub async fn update<T: Serialize>(&self, key: &str, value: &T, version: i64) -> Result<i64> {
        let bytes = encode(key, value)?;
        self.cas(key, Cond::ModRev(version), Write::Put(bytes, None), None)
            .await
    }

    /// Unconditional put, optionally attached to a lease (without one, the key
    /// is detached from any lease it had, as etcd's put does).
    pub async fn put<T: Serialize>(&self, key: &str, value: &T, lease: Option<i64>) -> Result<i64> {
        let bytes = encode(key, value)?;
        self.cas(key, Cond::Any, Write::Put(bytes, lease), None)
            .await
    }

    /// Deletes the key; with `Some(version)` only if unchanged (`BadVersion`/`NoNode`).
    /// With `None` the delete is unconditional and a missing key is `Ok` (the
    /// caller wanted it gone, and it is).
    pub async fn delete(&self, key: &str, version: Option<i64>) -> Result<()> {
        let cond = version.map_or(Cond::Any, Cond::ModRev);
        self.cas(key, cond, Write::Delete, None).await.map(|_| ())
    }

    /// [`Topo::create`] that happens only while `fence` holds (`Fenced` otherwise).
    pub async fn create_fenced<T: Serialize>(
        &self,
        fence: &Fence,
        key: &str,
        value: &T,
        lease: Option<i64>,
    ) -> Result<i64> {
        let bytes = encode(key, value)?;
        self.cas(key, Cond::Absent, Write::Put(bytes, lease), Some(fence))
            .await
    }

    /// [`Topo::update`] that happens only while `fence` holds (`Fenced` otherwise).
    pub async fn update_fenced<T: Serialize>(
        &self,
        fence: &Fence,
        key: &str,
        value: &T,
        version: i64,
    ) -> Result<i64> {
        let bytes = encode(key, value)?;
        self.cas(
            key,
            Cond::ModRev(version),
            Write::Put(bytes, None),
            Some(fence),
        )
        .await
    }

    /// [`Topo::put`] that happens only while `fence` holds (`Fenced` otherwise).
    pub async fn put_fenced<T: Serialize>(
        &self,
        fence: &Fence,
        key: &str,
        value: &T,
        lease: Option<i64>,
    ) -> Result<i64> {
        let bytes = encode(key, value)?;
        self.cas(key, Cond::Any, Write::Put(bytes, lease), Some(fence))
            .await
    }

    /// [`Topo::delete`] that happens only while `fence` holds (`Fenced` otherwise).
    pub async fn delete_fenced(
        &self,
        fence: &Fence,
        key: &str,
        version: Option<i64>,
    ) -> Result<()> {
        let cond = version.map_or(Cond::Any, Cond::ModRev);
        self.cas(key, cond, Write::Delete, Some(fence))
            .await
            .map(|_| ())
    }

    /// Read-modify-write with retry on `BadVersion`. `f` gets the current value
    /// (`None` if absent) and returns the new one, or `None` to leave it unchanged.
    /// Returns the record as it stands afterwards: the one written, or the current
    /// one when `f` left it unchanged (`None` if it is absent). A current record
    /// that does not parse is `BadRecord` (never overwritten blindly).
    pub async fn update_with<T, F>(&self, key: &str, f: F) -> Result<Option<Versioned<T>>>
    where
        T: Serialize + DeserializeOwned,
        F: FnMut(Option<T>) -> Result<Option<T>>,
    {
        self.update_with_inner(key, f, None).await
    }

    /// [`Topo::update_with`] whose writes happen only while `fence` holds.
    pub async fn update_with_fenced<T, F>(
        &self,
        fence: &Fence,
        key: &str,
        f: F,
    ) -> Result<Option<Versioned<T>>>
    where
        T: Serialize + DeserializeOwned,
        F: FnMut(Option<T>) -> Result<Option<T>>,
    {
        self.update_with_inner(key, f, Some(fence)).await
    }

    async fn update_with_inner<T, F>(
        &self,
        key: &str,
        mut f: F,
        fence: Option<&Fence>,
    ) -> Result<Option<Versioned<T>>>
    where
        T: Serialize + DeserializeOwned,
        F: FnMut(Option<T>) -> Result<Option<T>>,
    {
        // Small jittered pauses so two contenders stop colliding in lockstep.
        let mut pauses = ExponentialBuilder::default()
            .with_jitter()
            .with_min_delay(Duration::from_millis(2))
            .with_max_delay(Duration::from_millis(100))
            .without_max_times()
            .build();
        for _ in 0..UPDATE_WITH_ATTEMPTS {
            let (current, _) = self.get_raw(key).await?;
            let (decoded, cond) = match &current {
                None => (None, Cond::Absent),
                Some((bytes, version)) => (Some(decode::<T>(key, bytes)?), Cond::ModRev(*version)),
            };
            let Some(new) = f(decoded)? else {
                return match current {
                    None => Ok(None),
                    Some((bytes, version)) => Ok(Some(Versioned {
                        value: decode(key, &bytes)?,
                        version,
                    })),
                };
            };
            let bytes = encode(key, &new)?;
            match self.cas(key, cond, Write::Put(bytes, None), fence).await {
                Ok(version) => {
                    return Ok(Some(Versioned {
                        value: new,
                        version,
                    }))
                }
                Err(TopoError::BadVersion(_) | TopoError::NodeExists(_) | TopoError::NoNode(_)) => {
                    tokio::time::sleep(pauses.next().unwrap_or(Duration::from_millis(50))).await;
                }
                Err(e) => return Err(e),
            }
        }
        Err(TopoError::BadVersion(format!(
            "{key} (still contended after {UPDATE_WITH_ATTEMPTS} read-modify-write attempts)"
        )))
    }

    /// One conditional transaction: the fence's compares and the key condition
    /// guard the write; when they fail, the else branch reads the key and the
    /// fence key in the same revision, so the error names the real cause.
    async fn cas(&self, key: &str, cond: Cond, write: Write, fence: Option<&Fence>) -> Result<i64> {
        let mut compares: Vec<Compare> = fence.map(|f| f.compares()).unwrap_or_default();
        match cond {
            Cond::Absent => compares.push(Compare::version(key, CompareOp::Equal, 0)),
            Cond::ModRev(v) => compares.push(Compare::mod_revision(key, CompareOp::Equal, v)),
            Cond::Any => {}
        }
        let lease = match &write {
            Write::Put(_, l) => *l,
            Write::Delete => None,
        };
        let op = match write {
            Write::Put(bytes, lease) => {
                let opts = match (lease, cond) {
                    (Some(l), _) => Some(PutOptions::new().with_lease(l)),
                    // Replacing a record read at a version keeps its lease (a
                    // tablet's Health stays ephemeral through updates).
                    (None, Cond::ModRev(v)) if v > 0 => Some(PutOptions::new().with_ignore_lease()),
                    (None, _) => None,
                };
                TxnOp::put(key, bytes, opts)
            }
            Write::Delete => TxnOp::delete(key, None::<DeleteOptions>),
        };
        let mut otherwise = vec![TxnOp::get(key, None)];
        if let Some(f) = fence {
            otherwise.push(TxnOp::get(f.key(), None));
        }
        let txn = Txn::new()
            .when(compares)
            .and_then(vec![op])
            .or_else(otherwise);
        let resp: TxnResponse = self
            .call("txn", |mut c| {
                let txn = txn.clone();
                async move { c.txn(txn).await.map_err(|e| map_lease_error(e, lease)) }
            })
            .await?;
        let revision = resp.header().map(|h| h.revision()).unwrap_or(0);
        if resp.succeeded() {
            return Ok(revision);
        }
        let reads = resp.op_responses();
        let first_kv = |i: usize| -> Option<KeyValue> {
            match reads.get(i) {
                Some(TxnOpResponse::Get(g)) => g.kvs().first().cloned(),
                _ => None,
            }
        };
        if let Some(f) = fence {
            let held = first_kv(1).is_some_and(|kv| kv.create_revision() == f.create_revision());
            if !held {
                return Err(TopoError::Fenced(key.to_string()));
            }
        }
        let current = first_kv(0);
        Err(match (cond, current) {
            (Cond::Absent, _) => TopoError::NodeExists(key.to_string()),
            (Cond::ModRev(_), None) => TopoError::NoNode(key.to_string()),
            (Cond::ModRev(_), Some(_)) => TopoError::BadVersion(key.to_string()),
            // Only the fence could have failed, and it was seen holding: it changed
            // between compare and read, which one transaction rules out; report a
            // lost race so the caller re-reads.
            (Cond::Any, _) => TopoError::BadVersion(key.to_string()),
        })
    }
}

/// Encodes a record as JSON (the contract: values readable with etcdctl).
fn encode<T: Serialize>(key: &str, value: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(|e| TopoError::BadRecord {
        key: key.to_string(),
        reason: format!("cannot encode: {e}"),
    })
}

/// Decodes a JSON record, naming the key when it does not parse.
fn decode<T: DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| TopoError::BadRecord {
        key: key.to_string(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> TopoConfig {
        TopoConfig::default()
    }

    #[test]
    fn endpoints_get_http_or_https() {
        let mut c = cfg();
        c.endpoints = vec!["a:1".into(), " b:2 ".into(), "".into(), "http://c:3".into()];
        assert_eq!(
            endpoint_urls(&c).unwrap(),
            vec!["http://a:1", "http://b:2", "http://c:3"]
        );
        c.ca_file = Some("ca.pem".into());
        assert_eq!(endpoint_urls(&c).unwrap()[0], "https://a:1");
        c.endpoints = vec![];
        assert!(matches!(endpoint_urls(&c), Err(TopoError::Config(_))));
    }

    #[test]
    fn half_configured_tls_or_auth_is_refused() {
        let mut c = cfg();
        c.cert_file = Some("c.pem".into());
        assert!(matches!(connect_options(&c), Err(TopoError::Config(_))));
        let mut c = cfg();
        c.user = Some("u".into());
        assert!(matches!(connect_options(&c), Err(TopoError::Config(_))));
        let mut c = cfg();
        c.password_file = Some("p".into());
        assert!(matches!(connect_options(&c), Err(TopoError::Config(_))));
        let mut c = cfg();
        c.ca_file = Some("/nonexistent/cairn-ca.pem".into());
        let err = connect_options(&c).err().unwrap().to_string();
        assert!(err.contains("cairn-ca.pem"), "{err}");
    }

    #[test]
    fn password_file_loses_its_newline_only() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("pw");
        std::fs::write(&p, " s3cret \r\n").unwrap();
        assert_eq!(read_password(&p).unwrap(), " s3cret ");
    }

    #[test]
    fn decode_names_the_key() {
        let e = decode::<u32>("/k", b"{nope").unwrap_err();
        match e {
            TopoError::BadRecord { key, .. } => assert_eq!(key, "/k"),
            other => panic!("{other}"),
        }
    }

    #[test]
    fn transient_errors_are_told_apart() {
        let st = |c| TopoError::Etcd(etcd_client::Error::GRpcStatus(tonic::Status::new(c, "x")));
        assert!(st(tonic::Code::Unavailable).is_transient());
        assert!(st(tonic::Code::Unknown).is_transient());
        assert!(!st(tonic::Code::InvalidArgument).is_transient());
        assert!(!st(tonic::Code::PermissionDenied).is_transient());
        assert!(TopoError::Timeout("x".into()).is_transient());
        assert!(!TopoError::BadVersion("x".into()).is_transient());
        assert!(!TopoError::Fenced("x".into()).is_transient());
    }

    #[test]
    fn lease_not_found_is_typed() {
        let e = etcd_client::Error::GRpcStatus(tonic::Status::new(
            tonic::Code::NotFound,
            "etcdserver: requested lease not found",
        ));
        assert!(matches!(
            map_lease_error(e, Some(7)),
            TopoError::LeaseNotFound(7)
        ));
    }
}

#[cfg(test)]
mod prefix_tests {
    use super::prefix_end;

    #[test]
    fn prefix_end_covers_the_prefix() {
        assert_eq!(prefix_end(b"/a/"), b"/a0".to_vec());
        assert_eq!(prefix_end(b"a\xff"), b"b".to_vec());
        assert_eq!(prefix_end(b"\xff\xff"), vec![0]);
    }
}
