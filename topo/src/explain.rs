//! Turning the connection failures an operator must fix (TLS handshakes that
//! cannot succeed, logins etcd refuses, a `--topo-root` the user may not read)
//! into one clear, permanent error naming the endpoint and the flag to look at,
//! instead of an opaque transport error retried until a deadline.
//!
//! A pure decision over the failure's text (what tonic, rustls and etcd say) and
//! the configuration; depends only on [`crate::error`].

use crate::error::TopoError;

/// What was being attempted, for the message.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Attempt<'a> {
    /// The endpoints as given.
    pub endpoints: &'a str,
    /// Whether a client certificate was given (`--topo-cert`).
    pub client_cert: bool,
    /// `--topo-user`, if any.
    pub user: Option<&'a str>,
    /// The key prefix probed (`<root>/`).
    pub prefix: &'a str,
}

/// The TLS alert a server sent, from rustls's "received fatal alert: X".
fn alert(text: &str) -> Option<&str> {
    let rest = text.split("received fatal alert: ").nth(1)?;
    let end = rest
        .find(|c: char| !c.is_ascii_alphanumeric())
        .unwrap_or(rest.len());
    Some(&rest[..end])
}

/// Why the server's certificate was not accepted, from rustls's
/// "invalid peer certificate: X".
fn peer_cert_problem(text: &str) -> Option<&str> {
    let rest = text.split("invalid peer certificate: ").nth(1)?;
    let end = rest.find(['"', ',', ')']).unwrap_or(rest.len());
    Some(rest[..end].trim())
}

/// Whether a failure looks like the server dropping the connection (rather than
/// refusing it, or not answering): worth a [`crate::tls_probe`] to learn why.
pub(crate) fn looks_dropped(text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    [
        "connection closed",
        "broken pipe",
        "connection reset",
        "operation was canceled",
        "h2 protocol error",
    ]
    .iter()
    .any(|s| lower.contains(s))
}

/// The error for a server that speaks TLS while cairn was given no TLS flags
/// (a [`crate::tls_probe`] got a TLS handshake from it).
pub(crate) fn serves_tls(a: &Attempt<'_>) -> TopoError {
    TopoError::Tls(format!(
        "etcd at {} serves TLS but no TLS flags were given: give --topo-cacert \
         (and --topo-cert/--topo-key)",
        a.endpoints
    ))
}

/// A clear, permanent error for `e` when it is one the operator must fix, with
/// `text` its full rendering (source chain included); `None` leaves `e` as it
/// is (transient or already clear).
pub(crate) fn explain(text: &str, code: Option<tonic::Code>, a: &Attempt<'_>) -> Option<TopoError> {
    let ep = a.endpoints;
    if let Some(problem) = peer_cert_problem(text) {
        return Some(TopoError::Tls(format!(
            "TLS handshake with etcd at {ep} failed: its certificate is not accepted \
             with --topo-cacert ({problem})"
        )));
    }
    if let Some(alert) = alert(text) {
        return Some(TopoError::Tls(if a.client_cert {
            format!(
                "TLS handshake with etcd at {ep} failed: etcd rejected the client \
                 certificate (alert {alert}); --topo-cert must be signed by a CA etcd trusts"
            )
        } else {
            format!(
                "TLS handshake with etcd at {ep} failed: etcd requires a client \
                 certificate (alert {alert}); give --topo-cert and --topo-key"
            )
        }));
    }
    let user = a.user.unwrap_or("(none)");
    match code {
        Some(tonic::Code::InvalidArgument) if text.contains("authentication failed") => {
            Some(TopoError::Auth(format!(
                "etcd at {ep} refused the login of user {user}: invalid user or password \
                 (check --topo-user and --topo-password-file)"
            )))
        }
        Some(tonic::Code::InvalidArgument) if text.contains("user name is empty") => {
            Some(TopoError::Auth(format!(
                "etcd at {ep} has auth enabled: give --topo-user and --topo-password-file"
            )))
        }
        Some(tonic::Code::PermissionDenied) => Some(TopoError::Auth(format!(
            "etcd at {ep} denied user {user} access to {}: permission denied (its role \
             must grant readwrite on the --topo-root prefix)",
            a.prefix
        ))),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    const EP: &str = "127.0.0.1:2379";

    fn attempt(_tls: bool, client_cert: bool, user: Option<&'static str>) -> Attempt<'static> {
        Attempt {
            endpoints: EP,
            client_cert,
            user,
            prefix: "/cairn/",
        }
    }

    /// Texts as tonic/rustls/etcd render them (taken from real failures against
    /// etcd 3.4 with `--client-cert-auth` and auth enabled).
    #[test]
    fn operator_fixable_failures_are_named() {
        let alert = r#"etcd: grpc request error: code: 'Unknown error', message: "transport error", source: tonic::transport::Error(Transport, hyper::Error(Io, Custom { kind: InvalidData, error: "received fatal alert: BadCertificate" }))"#;
        let unknown_issuer = r#"etcd: grpc request error: code: 'The service is currently unavailable', message: "invalid peer certificate: UnknownIssuer", source: tonic::transport::Error(Transport, ConnectError(Custom { kind: InvalidData, error: InvalidCertificate(UnknownIssuer) }))"#;
        let broken_pipe = r#"etcd: grpc request error: code: 'Unknown error', message: "transport error", source: tonic::transport::Error(Transport, hyper::Error(Io, Custom { kind: BrokenPipe, error: "stream closed because of a broken pipe" }))"#;
        let refused = r#"etcd: grpc request error: code: 'The service is currently unavailable', message: "tcp connect error", source: tonic::transport::Error(Transport, ConnectError(ConnectError("tcp connect error", 127.0.0.1:2379, Os { code: 111, kind: ConnectionRefused, message: "Connection refused" })))"#;
        let cases: &[(&str, Option<Code>, Attempt<'static>, Option<&str>)] = &[
            (
                alert,
                Some(Code::Unknown),
                attempt(true, true, None),
                Some("etcd rejected the client certificate (alert BadCertificate)"),
            ),
            (
                alert,
                Some(Code::Unknown),
                attempt(true, false, None),
                Some("etcd requires a client certificate (alert BadCertificate); give --topo-cert"),
            ),
            (
                unknown_issuer,
                Some(Code::Unavailable),
                attempt(true, true, None),
                Some("not accepted with --topo-cacert (UnknownIssuer)"),
            ),
            // A dropped connection alone says nothing (a probe may tell more).
            (
                broken_pipe,
                Some(Code::Unknown),
                attempt(false, false, None),
                None,
            ),
            (
                broken_pipe,
                Some(Code::Unknown),
                attempt(true, true, None),
                None,
            ),
            // What the probe reads when etcd rejects the client certificate.
            (
                "received fatal alert: CertificateRequired",
                None,
                attempt(true, false, None),
                Some("requires a client certificate (alert CertificateRequired)"),
            ),
            (
                refused,
                Some(Code::Unavailable),
                attempt(false, false, None),
                None,
            ),
            (
                refused,
                Some(Code::Unavailable),
                attempt(true, true, None),
                None,
            ),
            (
                "etcdserver: authentication failed, invalid user ID or password",
                Some(Code::InvalidArgument),
                attempt(false, false, Some("cairn")),
                Some("refused the login of user cairn"),
            ),
            (
                "etcdserver: user name is empty",
                Some(Code::InvalidArgument),
                attempt(false, false, None),
                Some("has auth enabled: give --topo-user"),
            ),
            (
                "etcdserver: permission denied",
                Some(Code::PermissionDenied),
                attempt(false, false, Some("cairn")),
                Some("denied user cairn access to /cairn/: permission denied"),
            ),
            (
                "etcdserver: request timed out",
                Some(Code::Unavailable),
                attempt(false, false, Some("cairn")),
                None,
            ),
        ];
        assert!(looks_dropped(broken_pipe));
        assert!(looks_dropped(
            r#"hyper::Error(Canceled, "connection closed")"#
        ));
        assert!(!looks_dropped(refused));
        assert!(serves_tls(&attempt(false, false, None))
            .to_string()
            .contains("serves TLS"));
        for (text, code, a, want) in cases {
            let got = explain(text, *code, a);
            match (want, &got) {
                (None, None) => {}
                (Some(want), Some(e)) => {
                    let msg = e.to_string();
                    assert!(msg.contains(want), "{text}\n=> {msg}");
                    assert!(msg.contains(EP), "{msg}");
                    assert!(!msg.contains('\n'), "{msg}");
                    assert!(!e.is_transient(), "{msg}");
                }
                _ => panic!("{text} ({a:?}): want {want:?}, got {got:?}"),
            }
        }
    }
}
