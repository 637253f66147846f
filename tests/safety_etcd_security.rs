//! TLS and auth to etcd, for real: an etcd that serves TLS only and requires
//! client certificates (certificates made by the test with `openssl`), and an
//! etcd with auth on and a user whose only role grants readwrite on the
//! `--topo-root` prefix. Tablet, coordinator and CLI all work through them; a
//! client that cannot succeed (no client certificate, one signed by another CA,
//! plaintext, a wrong password, a root outside the role) fails at once with one
//! clear line naming the endpoint, and an `http://` endpoint given with TLS
//! flags is a usage error, never a silent plaintext connection.

use std::time::{Duration, Instant};

use cairn::testkit::{Cluster, ClusterOptions, TabletProcess};
use cairn_topo::Topo;

const T: Duration = Duration::from_secs(120);
/// A refused client must fail this fast (no retrying until a deadline).
const FAST: Duration = Duration::from_secs(5);

/// One primary of `ks/0` with rows, a coordinator leading, and a backup taken
/// through the CLI that `list-backups` shows: everything through `c`'s flags.
async fn works_end_to_end(c: &Cluster, topo: &Topo) -> TabletProcess {
    let mut t = c.spawn_tablet(&c.tablet(100, "ks", "0").unwrap()).unwrap();
    t.wait_healthy(topo, T).await.unwrap();
    c.cli_ok(&["init-shard-primary", "ks/0", &t.spec.alias()])
        .unwrap();
    t.sql(
        "CREATE DATABASE app; CREATE TABLE app.t (id INT PRIMARY KEY, v TEXT); \
         INSERT INTO app.t SELECT seq, MD5(seq) FROM app.seq_1_to_300",
    )
    .unwrap();
    let coord = c
        .spawn_coordinator("c1", &["--reconcile-interval", "1s"])
        .unwrap();
    coord.wait_leader(T).await.unwrap();
    let out = c
        .cli(&["backup", &t.spec.alias(), "--allow-primary"])
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        t.log_tail(30)
    );
    let name = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let root = c.backup_root().display().to_string();
    let list = c
        .cli_ok(&["list-backups", "ks/0", "--file-backup-storage-root", &root])
        .unwrap();
    assert!(list.contains(&name), "{name} not in list-backups:\n{list}");
    let tablets = c.cli_ok(&["get-tablets"]).unwrap();
    assert!(tablets.contains(&t.spec.alias()), "{tablets}");
    assert!(coord.status().unwrap()["is_leader"] == true);
    t
}

/// Runs `cairn get-tablets` with `globals`; asserts it fails with exit `code`
/// within [`FAST`], with one `error:` line containing every string of `want`.
fn refused(c: &Cluster, globals: &[String], code: i32, want: &[&str]) -> String {
    let started = Instant::now();
    let out = c.cli_with_globals(&["get-tablets"], globals).unwrap();
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
    assert_eq!(out.status.code(), Some(code), "{globals:?}: {stderr}");
    assert!(took < FAST, "{globals:?} took {took:?}: {stderr}");
    // One `error:` line, last; a retry may have logged a warning before it
    // (the server's alert can race the first request).
    let errors = stderr.lines().filter(|l| l.starts_with("error: ")).count();
    assert_eq!(errors, 1, "{globals:?}: {stderr}");
    let err = stderr.lines().last().unwrap_or_default().to_string();
    assert!(err.starts_with("error: "), "{stderr}");
    for w in want {
        assert!(err.contains(w), "{globals:?}: {err:?} lacks {w:?}");
    }
    assert!(out.stdout.is_empty(), "{globals:?}");
    err
}

fn flags(pairs: &[(&str, &str)]) -> Vec<String> {
    pairs
        .iter()
        .flat_map(|(f, v)| [f.to_string(), v.to_string()])
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_with_client_certificates_end_to_end_and_refusals() {
    tokio::time::timeout(Duration::from_secs(240), async {
        let opts = ClusterOptions {
            tls: true,
            ..Default::default()
        };
        let c = Cluster::start_with(env!("CARGO_BIN_EXE_cairn").into(), opts)
            .await
            .expect("cluster");
        let topo = c.topo().await.unwrap();
        let _tablet = works_end_to_end(&c, &topo).await;

        let certs = c.certs.as_ref().unwrap();
        let ep = c.etcd.endpoint();
        let ca = certs.ca().display().to_string();
        let other_ca = certs.other_ca().display().to_string();
        let good = certs.client();
        let (cert, key) = (
            good.cert.display().to_string(),
            good.key.display().to_string(),
        );
        let rogue = certs.rogue_client();
        let (rcert, rkey) = (
            rogue.cert.display().to_string(),
            rogue.key.display().to_string(),
        );

        // No client certificate.
        refused(
            &c,
            &flags(&[("--topo-server", &ep), ("--topo-cacert", &ca)]),
            1,
            &[
                &ep,
                "TLS handshake",
                "requires a client certificate",
                "--topo-cert",
            ],
        );
        // A client certificate signed by a CA etcd does not trust.
        refused(
            &c,
            &flags(&[
                ("--topo-server", &ep),
                ("--topo-cacert", &ca),
                ("--topo-cert", &rcert),
                ("--topo-key", &rkey),
            ]),
            1,
            &[&ep, "TLS handshake", "rejected the client certificate"],
        );
        // The server's certificate checked against the wrong CA.
        refused(
            &c,
            &flags(&[
                ("--topo-server", &ep),
                ("--topo-cacert", &other_ca),
                ("--topo-cert", &cert),
                ("--topo-key", &key),
            ]),
            1,
            &[&ep, "TLS handshake", "not accepted with --topo-cacert"],
        );
        // Plaintext, implicitly and explicitly.
        for server in [ep.clone(), format!("http://{ep}")] {
            refused(
                &c,
                &flags(&[("--topo-server", &server)]),
                1,
                &[&ep, "serves TLS but no TLS flags", "--topo-cacert"],
            );
        }
        // http:// together with TLS flags: bad usage, nothing dialled.
        refused(
            &c,
            &flags(&[
                ("--topo-server", &format!("http://{ep}")),
                ("--topo-cacert", &ca),
                ("--topo-cert", &cert),
                ("--topo-key", &key),
            ]),
            2,
            &[&format!("http://{ep}"), "plaintext http:// but TLS flags"],
        );
        // https:// spelled out with the right flags works.
        let ok = c
            .cli_with_globals(
                &["get-tablets"],
                &flags(&[
                    ("--topo-server", &format!("https://{ep}")),
                    ("--topo-cacert", &ca),
                    ("--topo-cert", &cert),
                    ("--topo-key", &key),
                ]),
            )
            .unwrap();
        assert!(
            ok.status.success(),
            "{}",
            String::from_utf8_lossy(&ok.stderr)
        );
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread")]
async fn auth_with_a_user_limited_to_the_root_end_to_end_and_refusals() {
    tokio::time::timeout(Duration::from_secs(240), async {
        let opts = ClusterOptions {
            auth: true,
            ..Default::default()
        };
        let c = Cluster::start_with(env!("CARGO_BIN_EXE_cairn").into(), opts)
            .await
            .expect("cluster");
        let topo = c.topo().await.unwrap();
        let _tablet = works_end_to_end(&c, &topo).await;

        let ep = c.etcd.endpoint();
        let auth = c.auth.as_ref().unwrap();
        let pw = c.password_file().display().to_string();
        let bad_pw = c.dir.path().join("wrong-password");
        std::fs::write(&bad_pw, "not-the-password\n").unwrap();
        let bad_pw = bad_pw.display().to_string();

        // A wrong password.
        refused(
            &c,
            &flags(&[
                ("--topo-server", &ep),
                ("--topo-user", &auth.user),
                ("--topo-password-file", &bad_pw),
            ]),
            1,
            &[
                &ep,
                "refused the login of user cairn",
                "--topo-password-file",
            ],
        );
        // No user at all.
        refused(
            &c,
            &flags(&[("--topo-server", &ep)]),
            1,
            &[&ep, "auth enabled", "--topo-user"],
        );
        // A root outside the role's prefix: a permission error, not a hang.
        refused(
            &c,
            &flags(&[
                ("--topo-server", &ep),
                ("--topo-root", "/elsewhere"),
                ("--topo-user", &auth.user),
                ("--topo-password-file", &pw),
            ]),
            1,
            &[
                &ep,
                "denied user cairn access to /elsewhere/",
                "permission denied",
            ],
        );
        // Everything cairn wrote is under its root (root sees the whole keyspace).
        let keys = cairn_topo::testkit::etcdctl(
            &c.etcd_members(),
            &["get", "", "--from-key", "--keys-only"],
        )
        .unwrap();
        let keys: Vec<&str> = keys.lines().filter(|l| !l.is_empty()).collect();
        assert!(!keys.is_empty());
        for k in &keys {
            assert!(k.starts_with("/cairn/"), "a key outside the root: {k}");
        }
    })
    .await
    .expect("test timed out");
}
