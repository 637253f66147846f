//! Reaching etcd: [`TopoConfig`] (the contract's `--topo-*` flags), TLS and auth
//! options, connecting with a logged backoff, and [`Topo`] itself: the key layout
//! plus the shared client, with [`Topo::call`] running each unary call under the
//! request deadline with transient errors retried.
//!
//! Calls [`crate::retry`] (deadlines, backoff), [`crate::keys`], `explain` and
//! `tls_probe` (why a connection failed) and `health` (keeping a multi-member
//! client on healthy members). The raw
//! client is handed only to the modules of this crate (and, with the `testkit`
//! feature, to tests); everything else goes through the typed API.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use backon::Retryable;
use etcd_client::{
    Certificate, Client, ConnectOptions, GetOptions, Identity, KeyValue, TlsOptions,
};
use tracing::warn;

use crate::error::{Result, TopoError};
use crate::explain::{explain, looks_dropped, serves_tls, Attempt};
use crate::health::{self, MonitorGuard};
use crate::keys::Keys;
use crate::retry::{next_delay, reconnect_backoff, unary_backoff, with_timeout};
use crate::tls_probe::{probe, Verdict};

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
    /// Keeps a multi-member client on healthy members; stops with the last clone.
    _health: Option<Arc<MonitorGuard>>,
}

/// The key of an etcd key-value as text (keys are always written from `&str`
/// here; anything else is shown lossily rather than failing).
pub(crate) fn key_string(kv: &KeyValue) -> String {
    String::from_utf8_lossy(kv.key()).into_owned()
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

/// Endpoints with their scheme: `https` when TLS is configured (a CA is
/// given), else `http`. A scheme written out must agree: `http://` with TLS
/// flags would talk plaintext while the operator asked for TLS, and `https://`
/// without a CA cannot verify the server; both are configuration errors, as is
/// any other scheme.
fn endpoint_urls(cfg: &TopoConfig) -> Result<Vec<String>> {
    let tls = cfg.ca_file.is_some();
    let mut urls = Vec::new();
    for e in cfg
        .endpoints
        .iter()
        .map(|e| e.trim())
        .filter(|e| !e.is_empty())
    {
        let url = match e.split_once("://") {
            None if tls => format!("https://{e}"),
            None => format!("http://{e}"),
            Some((scheme, rest)) => match scheme.to_ascii_lowercase().as_str() {
                "https" if tls => format!("https://{rest}"),
                "https" => {
                    return Err(TopoError::Config(format!(
                        "topo endpoint {e} is https:// but no --topo-cacert was given \
                         (the CA that signed etcd's certificate)"
                    )))
                }
                "http" if tls => {
                    return Err(TopoError::Config(format!(
                        "topo endpoint {e} is plaintext http:// but TLS flags were given; \
                         write it as HOST:PORT or https://HOST:PORT"
                    )))
                }
                "http" => format!("http://{rest}"),
                _ => {
                    return Err(TopoError::Config(format!(
                        "topo endpoint {e}: unsupported scheme {scheme}://; write HOST:PORT"
                    )))
                }
            },
        };
        urls.push(url);
    }
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

/// `e`, or the clear permanent error [`explain`] makes of it.
fn explained(e: TopoError, what: &Attempt<'_>) -> TopoError {
    let code = match &e {
        TopoError::Etcd(etcd_client::Error::GRpcStatus(s)) => Some(s.code()),
        _ => None,
    };
    explain(&format!("{e} {e:?}"), code, what).unwrap_or(e)
}

/// After a dropped connection: a TLS handshake with each endpoint, as
/// configured, to learn whether the server refuses us (then a clear error) or,
/// without TLS flags, whether it speaks TLS. `None` when nothing is learnt.
async fn diagnose(cfg: &TopoConfig, urls: &[String], what: &Attempt<'_>) -> Option<TopoError> {
    let ca = match &cfg.ca_file {
        Some(p) => Some(std::fs::read(p).ok()?),
        None => None,
    };
    let identity = match (&cfg.cert_file, &cfg.key_file) {
        (Some(c), Some(k)) => Some((std::fs::read(c).ok()?, std::fs::read(k).ok()?)),
        _ => None,
    };
    for url in urls {
        let host_port = url.split_once("://").map_or(url.as_str(), |(_, rest)| rest);
        let ids = identity.as_ref().map(|(c, k)| (c.as_slice(), k.as_slice()));
        let verdict = probe(host_port, ca.as_deref(), ids).await;
        match (&ca, verdict) {
            (Some(_), Verdict::Refused(text)) => {
                if let Some(e) = explain(&text, None, what) {
                    return Some(e);
                }
            }
            // Without a CA every certificate is refused: a TLS server all the same.
            (None, Verdict::Refused(text)) if text.contains("invalid peer certificate") => {
                return Some(serves_tls(what))
            }
            (None, Verdict::Accepted) => return Some(serves_tls(what)),
            _ => {}
        }
    }
    None
}

impl Topo {
    /// Connects (retrying transient failures with a logged, jittered backoff until
    /// `give_up_after`, or forever when `None`). Reachability is proven with a
    /// real request, since the client connects lazily: a serializable read of the
    /// root prefix, so a TLS handshake that cannot succeed, a refused login or a
    /// root the user may not read fail at once with a clear error
    /// ([`TopoError::Tls`], [`TopoError::Auth`]) instead of being retried.
    pub async fn connect(cfg: &TopoConfig, give_up_after: Option<Duration>) -> Result<Topo> {
        let urls = endpoint_urls(cfg)?;
        let opts = connect_options(cfg)?;
        let endpoints: Arc<str> = cfg.endpoints.join(",").into();
        let keys = Keys::new(&cfg.root);
        // The probe reads the root prefix: it proves the server answers, the
        // TLS handshake and the login work, and the user may read the root.
        let prefix = format!("{}/", keys.root());
        let what = Attempt {
            endpoints: &endpoints,
            client_cert: cfg.cert_file.is_some(),
            user: cfg.user.as_deref(),
            prefix: &prefix,
        };
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
                let probe_opts = GetOptions::new()
                    .with_prefix()
                    .with_keys_only()
                    .with_limit(1)
                    .with_serializable();
                with_timeout(cfg.request_timeout, "probe read", async {
                    Ok(probe.get(prefix.as_str(), Some(probe_opts)).await?)
                })
                .await?;
                Ok::<_, TopoError>(client)
            };
            let outcome = match attempt.await.map_err(|e| explained(e, &what)) {
                Err(e) if e.is_transient() && looks_dropped(&format!("{e} {e:?}")) => {
                    Err(diagnose(cfg, &urls, &what).await.unwrap_or(e))
                }
                other => other,
            };
            match outcome {
                Ok(client) => {
                    let health = health::start(client.clone(), urls.clone(), opts.clone()).await;
                    return Ok(Topo {
                        keys,
                        client,
                        request_timeout: cfg.request_timeout,
                        endpoints,
                        _health: health,
                    });
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

    /// Raw etcd client for the modules of this crate (watch, lease, lock,
    /// snapshot). Not public: callers outside use the typed API.
    pub(crate) fn client(&self) -> etcd_client::Client {
        self.client.clone()
    }

    /// Raw etcd client for tests and benchmarks that must reach past the typed
    /// API (e.g. to compact or to write a malformed value). Exists only with the
    /// `testkit` feature.
    #[cfg(feature = "testkit")]
    pub fn raw_client_for_tests(&self) -> etcd_client::Client {
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
            .retry(unary_backoff())
            .sleep(tokio::time::sleep)
            .when(|e: &TopoError| e.is_transient())
            .notify(|e: &TopoError, d: Duration| {
                warn!("etcd {what} failed: {e}; retrying in {d:?}");
            })
            .await
    }
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
        c.endpoints = vec!["a:1".into(), "HTTPS://b:2".into()];
        assert_eq!(
            endpoint_urls(&c).unwrap(),
            vec!["https://a:1", "https://b:2"]
        );
        c.endpoints = vec![];
        assert!(matches!(endpoint_urls(&c), Err(TopoError::Config(_))));
    }

    /// A scheme that contradicts the TLS flags is an error naming the endpoint,
    /// never a silent plaintext (or unverifiable) connection.
    #[test]
    fn a_scheme_contradicting_the_tls_flags_is_refused() {
        let cases: &[(&str, bool, &str)] = &[
            ("http://a:1", true, "plaintext http:// but TLS flags"),
            ("Http://a:1", true, "plaintext http:// but TLS flags"),
            ("https://a:1", false, "no --topo-cacert"),
            ("unix://a:1", false, "unsupported scheme unix://"),
            ("grpc://a:1", true, "unsupported scheme grpc://"),
        ];
        for (endpoint, tls, want) in cases {
            let mut c = cfg();
            c.endpoints = vec!["b:2".into(), endpoint.to_string()];
            if *tls {
                c.ca_file = Some("ca.pem".into());
            }
            match endpoint_urls(&c) {
                Err(TopoError::Config(msg)) => {
                    assert!(msg.contains(want), "{endpoint}: {msg}");
                    assert!(msg.contains(endpoint), "{endpoint}: {msg}");
                }
                other => panic!("{endpoint} (tls {tls}): {other:?}"),
            }
        }
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
        let p = std::env::temp_dir().join(format!("cairn-topo-pw-{}", std::process::id()));
        std::fs::write(&p, " s3cret \r\n").unwrap();
        let read = read_password(&p);
        let _ = std::fs::remove_file(&p);
        assert_eq!(read.unwrap(), " s3cret ");
    }
}
