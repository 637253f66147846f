//! An S3 server for the `s3` storage tests: [`MotoServer`] runs moto
//! (`moto_server`, PyPI `moto[server]`, installed by `scripts/setup.sh` into
//! `target/moto-venv`) on a free loopback port in a temporary directory, creates
//! buckets, and gives the storage flags and the (dummy) AWS credentials a `cairn`
//! process needs; plus raw listings (objects, unfinished multipart uploads) to
//! check what the backend left in the bucket. Killed on drop.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use cairn_topo::testkit::free_port;
use tempfile::TempDir;

use super::http::{http_exchange, http_request_with};

/// A request to moto as a client would send it: moto checks no signature, but
/// refuses some unsigned requests (deletes, conditional writes).
fn http_request(port: u16, method: &str, path: &str, body: &[u8]) -> anyhow::Result<(u16, String)> {
    http_request_with(port, method, path, &[("Authorization", AUTH)], body)
}

/// An `Authorization` header moto takes (it checks no signature).
const AUTH: &str = "AWS4-HMAC-SHA256 Credential=testing/20240101/us-east-1/s3/aws4_request, \
                    SignedHeaders=host, Signature=0";

/// The dummy credentials moto accepts (it checks no signature).
pub const AWS_ENV: &[(&str, &str)] = &[
    ("AWS_ACCESS_KEY_ID", "testing"),
    ("AWS_SECRET_ACCESS_KEY", "testing"),
];

/// Where `moto_server` is: `$CAIRN_MOTO_SERVER`, else the virtualenv
/// `scripts/setup.sh` makes under `target/`, else `PATH`.
fn moto_binary() -> PathBuf {
    if let Ok(p) = std::env::var("CAIRN_MOTO_SERVER") {
        return PathBuf::from(p);
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/moto-venv/bin/moto_server");
    if venv.is_file() {
        return venv;
    }
    PathBuf::from("moto_server")
}

/// A running moto server (see the module doc).
pub struct MotoServer {
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// Its working directory (and log).
    pub dir: TempDir,
    child: Option<Child>,
}

impl MotoServer {
    /// Starts moto on a free loopback port and waits until it answers.
    pub async fn start() -> anyhow::Result<MotoServer> {
        Self::start_with_env(&[]).await
    }

    /// Like [`MotoServer::start`], with extra environment for moto (e.g.
    /// `INITIAL_NO_AUTH_ACTION_COUNT=0` to check credentials).
    pub async fn start_with_env(env: &[(&str, &str)]) -> anyhow::Result<MotoServer> {
        let dir = tempfile::Builder::new()
            .prefix("cairn-moto-")
            .tempdir()
            .context("creating the moto dir")?;
        let bin = moto_binary();
        let log_path = dir.path().join("moto.log");
        let read_log = || std::fs::read_to_string(&log_path).unwrap_or_default();
        let mut last = String::new();
        for _ in 0..5 {
            let port = free_port().context("picking a port")?;
            let log = std::fs::File::create(&log_path)?;
            let mut child = Command::new(&bin)
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .current_dir(dir.path())
                .envs(env.iter().copied())
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()
                .with_context(|| {
                    format!(
                        "spawning {} (run scripts/setup.sh, or set CAIRN_MOTO_SERVER)",
                        bin.display()
                    )
                })?;
            let deadline = Instant::now() + Duration::from_secs(30);
            last = "moto did not answer within 30s".to_string();
            while Instant::now() < deadline {
                if let Ok(Some(status)) = child.try_wait() {
                    last = format!("moto exited with {status}");
                    break;
                }
                // Any HTTP answer will do (with authentication on, `/` is refused).
                if http_request(port, "GET", "/", b"").is_ok() {
                    return Ok(MotoServer {
                        port,
                        dir,
                        child: Some(child),
                    });
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        bail!("{last}: {}", read_log())
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("moto.log")).unwrap_or_default()
    }

    /// Creates a bucket.
    pub fn create_bucket(&self, bucket: &str) -> anyhow::Result<()> {
        let (code, body) = http_request(self.port, "PUT", &format!("/{bucket}"), b"")?;
        if code != 200 {
            bail!("creating bucket {bucket}: HTTP {code}: {body}");
        }
        Ok(())
    }

    /// The flags that point cairn at `bucket` on this server (or on `endpoint`,
    /// e.g. a proxy in front of it), with at most `retries` retries per request.
    pub fn flags(&self, bucket: &str, endpoint: Option<&str>, retries: u32) -> Vec<String> {
        vec![
            "--backup-storage-implementation".into(),
            "s3".into(),
            "--s3-backup-storage-bucket".into(),
            bucket.into(),
            "--s3-backup-aws-endpoint".into(),
            endpoint.map_or_else(|| self.endpoint(), str::to_string),
            "--s3-backup-force-path-style".into(),
            format!("--s3-backup-aws-retries={retries}"),
        ]
    }

    /// Every key in `bucket` under `prefix`, sorted.
    pub fn keys(&self, bucket: &str, prefix: &str) -> anyhow::Result<Vec<String>> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut path = format!("/{bucket}?list-type=2&prefix={}", encode(prefix));
            if let Some(t) = &token {
                path.push_str(&format!("&continuation-token={}", encode(t)));
            }
            let (code, body) = http_request(self.port, "GET", &path, b"")?;
            if code != 200 {
                bail!("listing {bucket}: HTTP {code}: {body}");
            }
            out.extend(xml_values(&body, "Key"));
            token = xml_values(&body, "NextContinuationToken")
                .into_iter()
                .next();
            if token.is_none() {
                break;
            }
        }
        out.sort();
        Ok(out)
    }

    /// Keys of the multipart uploads started and neither completed nor aborted.
    pub fn pending_uploads(&self, bucket: &str) -> anyhow::Result<Vec<String>> {
        let (code, body) = http_request(self.port, "GET", &format!("/{bucket}?uploads"), b"")?;
        if code != 200 {
            bail!("listing uploads of {bucket}: HTTP {code}: {body}");
        }
        Ok(xml_values(&body, "Key"))
    }

    /// Starts a multipart upload of `key` and leaves it unfinished (what a tablet
    /// killed mid-upload leaves); returns its upload id.
    pub fn start_upload(&self, bucket: &str, key: &str) -> anyhow::Result<String> {
        let (code, body) =
            http_request(self.port, "POST", &format!("/{bucket}/{key}?uploads"), b"")?;
        if code != 200 {
            bail!("starting an upload of {key}: HTTP {code}: {body}");
        }
        xml_values(&body, "UploadId")
            .into_iter()
            .next()
            .context("no UploadId in the answer")
    }

    /// Writes an object (to corrupt or plant one).
    pub fn put(&self, bucket: &str, key: &str, body: &[u8]) -> anyhow::Result<()> {
        let (code, text) = http_request(self.port, "PUT", &format!("/{bucket}/{key}"), body)?;
        if code != 200 {
            bail!("writing {key}: HTTP {code}: {text}");
        }
        Ok(())
    }

    /// Deletes an object.
    pub fn delete(&self, bucket: &str, key: &str) -> anyhow::Result<()> {
        let (code, text) = http_request(self.port, "DELETE", &format!("/{bucket}/{key}"), b"")?;
        if code != 204 && code != 200 {
            bail!("deleting {key}: HTTP {code}: {text}");
        }
        Ok(())
    }

    /// The headers moto answers a HEAD of an object with (names lower case), e.g.
    /// `x-amz-server-side-encryption` as it was stored.
    pub fn head(&self, bucket: &str, key: &str) -> anyhow::Result<Vec<(String, String)>> {
        let (code, headers, _) = http_exchange(
            self.port,
            "HEAD",
            &format!("/{bucket}/{key}"),
            &[("Authorization", AUTH)],
            b"",
        )?;
        if code != 200 {
            bail!("HEAD {key}: HTTP {code}");
        }
        Ok(headers)
    }

    /// Reads an object.
    pub fn get(&self, bucket: &str, key: &str) -> anyhow::Result<(u16, String)> {
        http_request(self.port, "GET", &format!("/{bucket}/{key}"), b"")
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Percent-encodes a query value.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The text of every `<tag>…</tag>` in `xml`, in order.
fn xml_values(xml: &str, tag: &str) -> Vec<String> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(i) = rest.find(&open) {
        let after = &rest[i + open.len()..];
        let Some(j) = after.find(&close) else { break };
        out.push(after[..j].replace("&amp;", "&"));
        rest = &after[j + close.len()..];
    }
    out
}
