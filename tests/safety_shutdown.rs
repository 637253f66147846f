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
