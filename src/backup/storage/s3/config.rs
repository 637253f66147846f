//! The `s3` backend's settings ([`S3Config`], from the `--s3-backup-*` flags), the
//! pure rules that check them (bucket, key prefix, endpoint, addressing style), the
//! shared AWS credentials file (`~/.aws/credentials`, which `object_store` does not
//! read), and building the `object_store` client from them.
//!
//! Credentials come only from the standard AWS environment variables
//! (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`, web identity,
//! ECS/EC2 metadata, as `object_store` reads them) and from the shared credentials
//! file (`AWS_SHARED_CREDENTIALS_FILE`, default `~/.aws/credentials`, profile
//! `AWS_PROFILE`, default `default`) when no key is in the environment. Never from
//! flags, etcd or logs: nothing here derives `Debug` over a secret.
//!
//! May call: `object_store`, `std`; nothing else of the crate.

use std::time::Duration;

use object_store::aws::{AmazonS3, AmazonS3Builder, AmazonS3ConfigKey};
use object_store::{BackoffConfig, ClientOptions, RetryConfig};

/// Server-side encryption asked of S3 (`--s3-backup-server-side-encryption`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerSideEncryption {
    /// `aws:kms`: SSE-KMS with the bucket's (or account's) default key.
    AwsKms,
    /// `AES256`: SSE-S3.
    Aes256,
}

impl ServerSideEncryption {
    /// The flag's and the S3 header's spelling.
    pub fn as_str(&self) -> &'static str {
        match self {
            ServerSideEncryption::AwsKms => "aws:kms",
            ServerSideEncryption::Aes256 => "AES256",
        }
    }

    /// Parses the flag's value (`aws:kms` or `AES256`).
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "aws:kms" => Ok(ServerSideEncryption::AwsKms),
            "AES256" => Ok(ServerSideEncryption::Aes256),
            _ => Err(format!("invalid value {s:?}: expected aws:kms or AES256")),
        }
    }
}

/// The `s3` backend's settings, checked ([`S3Config::validate`]) before use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Config {
    /// `--s3-backup-storage-bucket`.
    pub bucket: String,
    /// `--s3-backup-storage-root`, normalised: no leading or trailing `/` (empty:
    /// none).
    pub root: String,
    /// `--s3-backup-aws-region` (default `us-east-1`).
    pub region: String,
    /// `--s3-backup-aws-endpoint`: an S3-compatible server's URL.
    pub endpoint: Option<String>,
    /// `--s3-backup-force-path-style`: `ENDPOINT/BUCKET/KEY` instead of
    /// `BUCKET.ENDPOINT/KEY`.
    pub force_path_style: bool,
    /// `--s3-backup-aws-retries`: retries of each request (each part on its own);
    /// `None` for the default.
    pub retries: Option<u32>,
    /// `--s3-backup-server-side-encryption`.
    pub server_side_encryption: Option<ServerSideEncryption>,
    /// Part uploads in flight across every file of this process (`--concurrency`).
    pub concurrency: usize,
}

/// Retries of one request when `--s3-backup-aws-retries` is not given.
pub const DEFAULT_RETRIES: u32 = 10;
/// Longest time one request (one part, one ranged GET) may take before it fails
/// and is retried.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
/// Longest time to connect.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

impl S3Config {
    /// The settings for `bucket` with every other flag at its default.
    pub fn new(bucket: impl Into<String>) -> Self {
        Self {
            bucket: bucket.into(),
            root: String::new(),
            region: "us-east-1".into(),
            endpoint: None,
            force_path_style: false,
            retries: None,
            server_side_encryption: None,
            concurrency: 4,
        }
    }

    /// Checks the bucket, prefix, region and endpoint, and normalises the prefix.
    /// The error names the flag. Pure.
    pub fn validate(mut self) -> Result<Self, String> {
        validate_bucket(&self.bucket)?;
        self.root = normalize_root(&self.root)?;
        if self.region.is_empty()
            || !self
                .region
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            return Err(format!(
                "--s3-backup-aws-region: invalid region {:?}",
                self.region
            ));
        }
        if let Some(e) = &self.endpoint {
            parse_endpoint(e)?;
        }
        self.concurrency = self.concurrency.max(1);
        Ok(self)
    }

    /// `s3://bucket/prefix`, for messages.
    pub fn url(&self) -> String {
        if self.root.is_empty() {
            format!("s3://{}", self.bucket)
        } else {
            format!("s3://{}/{}", self.bucket, self.root)
        }
    }

    /// The bucket's own URL, where `object_store` sends its requests. Pure.
    pub(super) fn bucket_url(&self) -> Result<String, String> {
        let (b, r) = (&self.bucket, &self.region);
        Ok(match &self.endpoint {
            Some(e) => match bucket_endpoint(&parse_endpoint(e)?, b, self.force_path_style) {
                (url, true) => url,
                (url, false) => format!("{url}/{b}"),
            },
            None if self.force_path_style => format!("https://s3.{r}.amazonaws.com/{b}"),
            None => format!("https://{b}.s3.{r}.amazonaws.com"),
        })
    }

    /// The client these settings describe, with credentials from the environment
    /// or the shared credentials file. Fails only on settings `object_store`
    /// refuses; nothing is sent.
    pub fn build(&self) -> Result<AmazonS3, String> {
        let mut b = AmazonS3Builder::from_env()
            .with_bucket_name(&self.bucket)
            .with_region(&self.region)
            .with_retry(RetryConfig {
                backoff: BackoffConfig::default(),
                max_retries: self.retries.unwrap_or(DEFAULT_RETRIES) as usize,
                retry_timeout: Duration::from_secs(5 * 60),
            })
            .with_client_options(
                ClientOptions::new()
                    .with_timeout(REQUEST_TIMEOUT)
                    .with_connect_timeout(CONNECT_TIMEOUT),
            );
        if std::env::var_os("AWS_ACCESS_KEY_ID").is_none() {
            if let Some(c) = credentials_from_file()? {
                b = b
                    .with_access_key_id(c.access_key_id)
                    .with_secret_access_key(c.secret_access_key);
                if let Some(t) = c.session_token {
                    b = b.with_token(t);
                }
            }
        }
        match &self.endpoint {
            Some(e) => {
                let ep = parse_endpoint(e)?;
                let (url, virtual_hosted) =
                    bucket_endpoint(&ep, &self.bucket, self.force_path_style);
                b = b
                    .with_endpoint(url)
                    .with_virtual_hosted_style_request(virtual_hosted)
                    .with_allow_http(ep.scheme == "http");
            }
            None => b = b.with_virtual_hosted_style_request(!self.force_path_style),
        }
        if let Some(sse) = self.server_side_encryption {
            let key: AmazonS3ConfigKey = "aws_server_side_encryption"
                .parse()
                .map_err(|e| format!("--s3-backup-server-side-encryption: {e}"))?;
            b = b.with_config(key, sse.as_str());
        }
        b.build()
            .map_err(|e| format!("configuring S3 bucket {}: {e}", self.bucket))
    }
}

/// A bucket name S3 (or an S3-compatible server) can hold: 3 to 255 characters of
/// `[A-Za-z0-9._-]`, starting and ending with a letter or digit (AWS's current
/// rule is stricter, 3–63 lower case; older buckets and other servers are not).
fn validate_bucket(b: &str) -> Result<(), String> {
    let ok = (3..=255).contains(&b.len())
        && b.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        && b.starts_with(|c: char| c.is_ascii_alphanumeric())
        && b.ends_with(|c: char| c.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "--s3-backup-storage-bucket: invalid bucket name {b:?} (3 to 255 letters, digits, \
             '.', '-' or '_', starting and ending with a letter or digit)"
        ))
    }
}

/// The key prefix without leading or trailing `/`; each segment a plain name
/// (`[A-Za-z0-9._-]`, not `.` or `..`), so no key escapes it or is ambiguous.
fn normalize_root(root: &str) -> Result<String, String> {
    let trimmed = root.trim_matches('/');
    if trimmed.is_empty() {
        return Ok(String::new());
    }
    for seg in trimmed.split('/') {
        let ok = !seg.is_empty()
            && seg != "."
            && seg != ".."
            && seg
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
        if !ok {
            return Err(format!(
                "--s3-backup-storage-root: invalid key prefix {root:?} (segments of letters, \
                 digits, '.', '-' or '_', separated by '/')"
            ));
        }
    }
    Ok(trimmed.to_string())
}

/// An endpoint URL taken apart.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Endpoint {
    scheme: String,
    host: String,
    /// `:port`, or empty.
    port: String,
    /// Path after the authority without trailing `/`, or empty.
    path: String,
}

/// Parses `http(s)://HOST[:PORT][/PATH]`. Pure.
fn parse_endpoint(e: &str) -> Result<Endpoint, String> {
    let bad = |why: &str| format!("--s3-backup-aws-endpoint: invalid URL {e:?}: {why}");
    let (scheme, rest) = e
        .split_once("://")
        .ok_or_else(|| bad("expected http://HOST[:PORT] or https://HOST[:PORT]"))?;
    if scheme != "http" && scheme != "https" {
        return Err(bad("the scheme must be http or https"));
    }
    if rest
        .chars()
        .any(|c| c.is_whitespace() || c == '@' || c == '?' || c == '#')
    {
        return Err(bad("no spaces, user info, query or fragment"));
    }
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
        None => (rest, ""),
    };
    let (host, port) = if let Some(stripped) = authority.strip_prefix('[') {
        let end = stripped.find(']').ok_or_else(|| bad("unclosed '['"))?;
        (
            format!("[{}]", &stripped[..end]),
            stripped[end + 1..].to_string(),
        )
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), format!(":{p}")),
            None => (authority.to_string(), String::new()),
        }
    };
    if host.is_empty() || host == "[]" {
        return Err(bad("no host"));
    }
    if !port.is_empty() {
        let digits = &port[1..];
        if digits.is_empty() || digits.parse::<u16>().is_err() {
            return Err(bad("the port must be a number below 65536"));
        }
    }
    Ok(Endpoint {
        scheme: scheme.to_string(),
        host,
        port,
        path: path.to_string(),
    })
}

/// The URL requests go to and whether it already names the bucket: path style
/// (`ENDPOINT/BUCKET`, named by `object_store`) when asked, or when the host is an
/// IP address or `localhost` (which cannot carry the bucket as a subdomain);
/// otherwise virtual-hosted style (`BUCKET.HOST`). Pure.
fn bucket_endpoint(ep: &Endpoint, bucket: &str, force_path_style: bool) -> (String, bool) {
    let is_ip = ep.host.starts_with('[') || ep.host.parse::<std::net::Ipv4Addr>().is_ok();
    if force_path_style || is_ip || ep.host.eq_ignore_ascii_case("localhost") {
        return (
            format!("{}://{}{}{}", ep.scheme, ep.host, ep.port, ep.path),
            false,
        );
    }
    (
        format!("{}://{bucket}.{}{}{}", ep.scheme, ep.host, ep.port, ep.path),
        true,
    )
}

/// Keys read from the shared credentials file. Not `Debug`: it holds a secret.
pub(super) struct FileCredentials {
    access_key_id: String,
    secret_access_key: String,
    session_token: Option<String>,
}

/// The profile's keys from the shared credentials file, if the file exists and
/// has them. An unreadable file or a profile without both keys is an error naming
/// the file (never its contents).
fn credentials_from_file() -> Result<Option<FileCredentials>, String> {
    let path = match std::env::var_os("AWS_SHARED_CREDENTIALS_FILE") {
        Some(p) => std::path::PathBuf::from(p),
        None => match std::env::var_os("HOME") {
            Some(h) => std::path::Path::new(&h).join(".aws").join("credentials"),
            None => return Ok(None),
        },
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(format!(
                "reading AWS credentials file {}: {e}",
                path.display()
            ))
        }
    };
    let profile = std::env::var("AWS_PROFILE").unwrap_or_else(|_| "default".into());
    parse_credentials(&text, &profile)
        .map_err(|why| format!("AWS credentials file {}: {why}", path.display()))
}

/// The keys of `profile` in a credentials file's text (INI: `[profile]`, then
/// `key = value` lines; `#`/`;` comments). `Ok(None)` if the profile is absent.
/// Pure.
pub(super) fn parse_credentials(
    text: &str,
    profile: &str,
) -> Result<Option<FileCredentials>, String> {
    let mut in_profile = false;
    let mut found = false;
    let (mut key, mut secret, mut token) = (None, None, None);
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            in_profile = name.trim() == profile;
            found |= in_profile;
            continue;
        }
        if !in_profile {
            continue;
        }
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        let v = v.trim().to_string();
        match k.trim() {
            "aws_access_key_id" => key = Some(v),
            "aws_secret_access_key" => secret = Some(v),
            "aws_session_token" => token = Some(v),
            _ => {}
        }
    }
    match (found, key, secret) {
        (false, _, _) => Ok(None),
        (true, Some(k), Some(s)) if !k.is_empty() && !s.is_empty() => Ok(Some(FileCredentials {
            access_key_id: k,
            secret_access_key: s,
            session_token: token.filter(|t| !t.is_empty()),
        })),
        (true, _, _) => Err(format!(
            "profile [{profile}] lacks aws_access_key_id or aws_secret_access_key"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_and_prefixes() {
        for (b, ok) in [
            ("backups", true),
            ("my.bucket-1", true),
            ("Legacy_Bucket", true),
            ("ab", false),
            ("-bucket", false),
            ("bucket-", false),
            ("buck et", false),
            ("bucket/x", false),
            ("", false),
        ] {
            assert_eq!(validate_bucket(b).is_ok(), ok, "{b:?}");
        }
        for (root, want) in [
            ("", Ok("")),
            ("/", Ok("")),
            ("cairn", Ok("cairn")),
            ("/team/cairn/", Ok("team/cairn")),
            ("a//b", Err(())),
            ("a/../b", Err(())),
            ("a/./b", Err(())),
            ("a b", Err(())),
            ("a/b?c", Err(())),
        ] {
            let got = normalize_root(root).map_err(|_| ());
            assert_eq!(got.as_deref(), want.as_deref(), "{root:?}");
        }
    }

    #[test]
    fn endpoints_and_addressing_style() {
        let url = |e: &str, path_style: bool| {
            parse_endpoint(e).map(|ep| bucket_endpoint(&ep, "bkt", path_style))
        };
        type Case<'a> = (&'a str, bool, Option<(&'a str, bool)>);
        let cases: &[Case] = &[
            (
                "http://127.0.0.1:9000",
                false,
                Some(("http://127.0.0.1:9000", false)),
            ),
            (
                "http://localhost:9000/",
                false,
                Some(("http://localhost:9000", false)),
            ),
            (
                "http://[::1]:9000",
                false,
                Some(("http://[::1]:9000", false)),
            ),
            (
                "https://minio.example.com",
                false,
                Some(("https://bkt.minio.example.com", true)),
            ),
            (
                "https://minio.example.com",
                true,
                Some(("https://minio.example.com", false)),
            ),
            (
                "https://s3.example.com:8443/base",
                false,
                Some(("https://bkt.s3.example.com:8443/base", true)),
            ),
            ("ftp://x", false, None),
            ("127.0.0.1:9000", false, None),
            ("http://", false, None),
            ("http://host:port", false, None),
            ("http://host:70000", false, None),
            ("http://user@host", false, None),
            ("http://host/a?b", false, None),
        ];
        for (e, ps, want) in cases {
            let got = url(e, *ps).ok();
            let want = want.map(|(u, v)| (u.to_string(), v));
            assert_eq!(got, want, "{e} path_style={ps}");
        }
        let bucket_url = |endpoint: Option<&str>, path_style: bool| {
            S3Config {
                endpoint: endpoint.map(str::to_string),
                force_path_style: path_style,
                region: "eu-west-1".into(),
                ..S3Config::new("bkt")
            }
            .bucket_url()
            .unwrap()
        };
        assert_eq!(
            bucket_url(None, false),
            "https://bkt.s3.eu-west-1.amazonaws.com"
        );
        assert_eq!(
            bucket_url(None, true),
            "https://s3.eu-west-1.amazonaws.com/bkt"
        );
        assert_eq!(
            bucket_url(Some("http://127.0.0.1:9000/"), false),
            "http://127.0.0.1:9000/bkt"
        );
        assert_eq!(
            bucket_url(Some("https://minio.example.com"), false),
            "https://bkt.minio.example.com"
        );
        let err = parse_endpoint("ftp://x").unwrap_err();
        assert!(err.starts_with("--s3-backup-aws-endpoint: "), "{err}");
    }

    #[test]
    fn config_validation_names_the_flag() {
        let ok = S3Config {
            root: "/x/y/".into(),
            ..S3Config::new("bkt")
        }
        .validate()
        .unwrap();
        assert_eq!(ok.root, "x/y");
        assert_eq!(ok.url(), "s3://bkt/x/y");
        for (cfg, flag) in [
            (S3Config::new("b"), "--s3-backup-storage-bucket"),
            (
                S3Config {
                    root: "..".into(),
                    ..S3Config::new("bkt")
                },
                "--s3-backup-storage-root",
            ),
            (
                S3Config {
                    region: "us east".into(),
                    ..S3Config::new("bkt")
                },
                "--s3-backup-aws-region",
            ),
            (
                S3Config {
                    endpoint: Some("localhost:9000".into()),
                    ..S3Config::new("bkt")
                },
                "--s3-backup-aws-endpoint",
            ),
        ] {
            let err = cfg.validate().unwrap_err();
            assert!(err.starts_with(flag), "{err}");
        }
        assert_eq!(
            ServerSideEncryption::parse("aws:kms"),
            Ok(ServerSideEncryption::AwsKms)
        );
        assert_eq!(
            ServerSideEncryption::parse("AES256"),
            Ok(ServerSideEncryption::Aes256)
        );
        assert!(ServerSideEncryption::parse("aes256").is_err());
    }

    #[test]
    fn credentials_file_profiles() {
        let text = "# comment\n[default]\naws_access_key_id = AKIA1\naws_secret_access_key=s1\n\n\
                    [backup]\n; other\naws_access_key_id=AKIA2\naws_secret_access_key = s2\n\
                    aws_session_token = tok\n[broken]\naws_access_key_id = AKIA3\n";
        let d = parse_credentials(text, "default").unwrap().unwrap();
        assert_eq!(
            (d.access_key_id.as_str(), d.secret_access_key.as_str()),
            ("AKIA1", "s1")
        );
        assert!(d.session_token.is_none());
        let b = parse_credentials(text, "backup").unwrap().unwrap();
        assert_eq!(b.access_key_id, "AKIA2");
        assert_eq!(b.session_token.as_deref(), Some("tok"));
        assert!(parse_credentials(text, "missing").unwrap().is_none());
        let err = parse_credentials(text, "broken").err().unwrap();
        assert!(err.contains("[broken]") && !err.contains("AKIA3"), "{err}");
    }
}
