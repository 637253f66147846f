//! Bounded shutdown: SIGTERM ends the agent within the bound the README states
//! ("Running a tablet by hand") even when its mysqld hangs: a tablet whose mysqld
//! is frozen with SIGSTOP gets SIGTERM; the agent exits in time (its loops are
//! aborted after their grace, mysqld is killed after its clean-shutdown timeout),
//! and the tablet restarts on its data with every row.

use std::time::{Duration, Instant};

use cairn::testkit::{wait_for, Cluster};

const T: Duration = Duration::from_secs(120);

/// The bound the README states for a SIGTERM'd agent (`shutdown_bound`).
const STATED_BOUND: Duration = Duration::from_secs(86);

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_ends_the_agent_in_time_while_mysqld_is_frozen() {
    tokio::time::timeout(Duration::from_secs(420), async {
        let c = Cluster::start(env!("CARGO_BIN_EXE_cairn").into())
            .await
            .expect("cluster");
        let topo = c.topo().await.unwrap();
        let spec = c.tablet(100, "ks", "0").unwrap();
        let mut t = c.spawn_tablet(&spec).unwrap();
        t.wait_healthy(&topo, T).await.unwrap();
        c.cli_ok(&["init-shard-primary", "ks/0", &spec.alias()])
            .unwrap();
        t.sql("CREATE DATABASE app; CREATE TABLE app.t (id INT PRIMARY KEY, v TEXT); INSERT INTO app.t SELECT seq, MD5(seq) FROM app.seq_1_to_1000")
            .unwrap();
        assert_eq!(t.sql("SELECT COUNT(*) FROM app.t").unwrap().trim(), "1000");

        let mysqld = t.mysqld_pid().expect("mysqld pid file");
        // SAFETY: kill(2) on the test's own mysqld.
        unsafe { libc::kill(mysqld, libc::SIGSTOP) };
        // Let the agent's loops run into the frozen server.
        tokio::time::sleep(Duration::from_secs(3)).await;

        let asked = Instant::now();
        let st = t
            .terminate(STATED_BOUND)
            .unwrap_or_else(|e| panic!("{e}\n{}", t.log_tail(30)));
        let took = asked.elapsed();
        assert!(took <= STATED_BOUND, "agent took {took:?}");
        assert!(st.success(), "agent exit {st}: {}", t.log_tail(20));
        assert!(
            t.log().contains("killing it"),
            "the frozen mysqld was not killed:\n{}",
            t.log_tail(30)
        );

        // Whatever is left of the frozen server goes (it should be gone already).
        // SAFETY: kill(2) on the test's own mysqld.
        unsafe {
            libc::kill(mysqld, libc::SIGCONT);
            libc::kill(mysqld, libc::SIGKILL);
        }
        wait_for("the old mysqld to be gone", T, || async {
            let stat = std::fs::read_to_string(format!("/proc/{mysqld}/stat")).unwrap_or_default();
            // Gone, or a zombie waiting for its reaper.
            let gone = stat.is_empty() || stat.contains(") Z ");
            Ok(gone.then_some(()))
        })
        .await
        .unwrap();

        let mut t = c.spawn_tablet(&spec).unwrap();
        t.wait_healthy(&topo, T)
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}", t.log_tail(30)));
        assert_eq!(
            t.sql("SELECT COUNT(*) FROM app.t").unwrap().trim(),
            "1000",
            "rows lost across the forced shutdown"
        );
        t.terminate(Duration::from_secs(60)).unwrap();
    })
    .await
    .expect("test timed out");
}

/// Pids of the live processes named `name` whose parent is `parent`.
fn children_named(parent: u32, name: &str) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return vec![];
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            // pid (comm) state ppid ...
            let Some((head, rest)) = stat.rsplit_once(") ") else {
                return false;
            };
            let mut f = rest.split_whitespace();
            let state = f.next();
            let ppid = f.next().and_then(|p| p.parse::<u32>().ok());
            head.ends_with(&format!("({name}")) && ppid == Some(parent) && state != Some("Z")
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_during_an_xtrabackup_kills_the_frozen_tool() {
    tokio::time::timeout(Duration::from_secs(420), async {
        let c = Cluster::start(env!("CARGO_BIN_EXE_cairn").into())
            .await
            .expect("cluster");
        let topo = c.topo().await.unwrap();
        let spec = c.tablet(200, "ks", "0").unwrap();
        let mut t = c.spawn_tablet(&spec).unwrap();
        t.wait_healthy(&topo, T).await.unwrap();
        c.cli_ok(&["init-shard-primary", "ks/0", &spec.alias()])
            .unwrap();
        t.sql("CREATE DATABASE app; CREATE TABLE app.t (id INT PRIMARY KEY, v TEXT); INSERT INTO app.t SELECT seq, MD5(seq) FROM app.seq_1_to_1000")
            .unwrap();
        let agent = t.pid().expect("agent pid");

        let mut backup = std::process::Command::new(env!("CARGO_BIN_EXE_cairn"))
            .args(["backup", &spec.alias(), "--allow-primary", "--backup-engine", "xtrabackup"])
            .args(c.global_args())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // Freeze the backup tool as soon as it runs.
        let tool = wait_for("mariabackup to run", T, || async {
            let mut found = children_named(agent, "mariabackup");
            found.extend(children_named(agent, "mariadb-backup"));
            if let Some(pid) = found.first() {
                // SAFETY: kill(2) on the test's own tool process.
                unsafe { libc::kill(*pid, libc::SIGSTOP) };
            }
            Ok(found.first().copied())
        })
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", t.log_tail(30)));
        tokio::time::sleep(Duration::from_secs(1)).await;

        let asked = Instant::now();
        let st = t
            .terminate(STATED_BOUND)
            .unwrap_or_else(|e| panic!("{e}\n{}", t.log_tail(30)));
        let took = asked.elapsed();
        assert!(took <= STATED_BOUND, "agent took {took:?}");
        assert!(st.success(), "agent exit {st}: {}", t.log_tail(20));
        let stat = std::fs::read_to_string(format!("/proc/{tool}/stat")).unwrap_or_default();
        let gone = stat.is_empty() || stat.contains(") Z ");
        if !gone {
            // SAFETY: kill(2) on the test's own tool process.
            unsafe { libc::kill(tool, libc::SIGKILL) };
        }
        assert!(gone, "mariabackup outlived the agent: {stat}");
        let _ = backup.kill();
        let _ = backup.wait();

        let mut t = c.spawn_tablet(&spec).unwrap();
        t.wait_healthy(&topo, T)
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}", t.log_tail(30)));
        assert_eq!(
            t.sql("SELECT COUNT(*) FROM app.t").unwrap().trim(),
            "1000",
            "rows lost across the stop"
        );
        // The abandoned job is failed by the restarted agent, not left RUNNING.
        let jobs: Vec<serde_json::Value> =
            serde_json::from_str(&c.cli_ok(&["jobs", "--json"]).unwrap()).unwrap();
        assert!(
            !jobs.is_empty() && jobs.iter().all(|j| j["state"] == "FAILED"),
            "{jobs:?}"
        );
        t.terminate(Duration::from_secs(60)).unwrap();
    })
    .await
    .expect("test timed out");
}
