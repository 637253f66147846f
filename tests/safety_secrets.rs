//! Secrets against a real agent, etcd and MariaDB: the built-in replication password
//! is refused once mysqld would listen beyond loopback, and the servers the agent
//! spawns do not inherit its `CAIRN_*` variables (the replication password among
//! them).

use std::process::{Command, Stdio};
use std::time::Duration;

use cairn::testkit::Cluster;

const T: Duration = Duration::from_secs(90);

async fn cluster() -> Cluster {
    Cluster::start(env!("CARGO_BIN_EXE_cairn").into())
        .await
        .expect("cluster")
}

/// The `NAME=value` entries of a process's environment.
fn environ(pid: i32) -> Vec<String> {
    let raw = std::fs::read(format!("/proc/{pid}/environ")).expect("reading /proc/PID/environ");
    raw.split(|b| *b == 0)
        .filter(|e| !e.is_empty())
        .map(|e| String::from_utf8_lossy(e).into_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn mysqld_does_not_inherit_the_replication_password() {
    tokio::time::timeout(Duration::from_secs(180), async {
        let c = cluster().await;
        let topo = c.topo().await.unwrap();
        let mut spec = c.tablet(201, "secrets", "0").unwrap();
        // Another variable of the agent's own (no flag reads it): children get none.
        spec.env
            .push(("CAIRN_TEST_SECRET".into(), "another-secret".into()));
        let mut t = c.spawn_tablet(&spec).unwrap();
        t.wait_healthy(&topo, T).await.unwrap();

        // The agent has the password (the test harness hands it over)...
        let agent = environ(t.pid().unwrap() as i32);
        assert!(
            agent
                .iter()
                .any(|e| e == "CAIRN_REPLICATION_PASSWORD=test-repl-pw"),
            "the agent was not given the password: {agent:?}"
        );
        // ...its mysqld has none of the agent's variables.
        let pid = t.mysqld_pid().expect("mysqld pid file");
        let env = environ(pid);
        assert!(
            env.iter().any(|e| e.starts_with("PATH=")),
            "mysqld's environment looks empty, the check would prove nothing: {env:?}"
        );
        let leaked: Vec<&String> = env.iter().filter(|e| e.starts_with("CAIRN_")).collect();
        assert!(leaked.is_empty(), "mysqld inherited {leaked:?}");
        assert!(
            !env.iter()
                .any(|e| e.contains("test-repl-pw") || e.contains("another-secret")),
            "the password is in mysqld's environment"
        );
    })
    .await
    .expect("test timed out");
}

#[tokio::test(flavor = "multi_thread")]
async fn built_in_password_is_refused_beyond_loopback() {
    tokio::time::timeout(Duration::from_secs(60), async {
        let c = cluster().await;
        let dir = tempfile::tempdir().unwrap();
        let run = |bind: &str| {
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_cairn"));
            cmd.arg("tablet")
                .args(c.global_args())
                .args(["--tablet-uid", "202", "--init-keyspace", "secrets"])
                .args(["--init-shard", "0", "--mysql-port", "1"])
                .arg("--tablet-dir")
                .arg(dir.path().join("tablet"))
                .args(["--mysql-bind-address", bind])
                .env_remove("CAIRN_REPLICATION_PASSWORD")
                .stdin(Stdio::null());
            cmd.output().unwrap()
        };
        let out = run("0.0.0.0");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
        let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
        assert_eq!(errors.len(), 1, "stderr: {stderr}");
        assert!(
            errors[0].contains("--replication-password-file")
                && errors[0].contains("CAIRN_REPLICATION_PASSWORD")
                && errors[0].contains("0.0.0.0"),
            "{stderr}"
        );
        // Nothing was started or written.
        assert!(!dir.path().join("tablet").exists());
    })
    .await
    .expect("test timed out");
}
