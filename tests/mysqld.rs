//! The tablet's mysqld side against a real MariaDB: initialise, start, adopt, restart
//! after SIGKILL, replicate by GTID, fail to start with the error log quoted, and
//! quote passwords. Each server lives in a temp dir on a free loopback port and is
//! SIGKILLed by a guard when the test ends, whether it passed, failed or timed out.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cairn::mysql::flavor::UserAuth;
use cairn::mysql::mysqld::{server_id_for_uid, Mysqld, MysqldConfig};
use cairn::testkit::{wait_for, Wait};
use cairn_topo::testkit::free_port;
use mysql_async::prelude::Queryable;

/// Per-test limit; a hung server must not hang the suite.
const TEST_TIMEOUT: Duration = Duration::from_secs(180);

async fn with_timeout<F: Future<Output = ()>>(f: F) {
    tokio::time::timeout(TEST_TIMEOUT, f)
        .await
        .expect("test timed out");
}

/// SIGKILLs every mysqld serving `datadir` when dropped (pid file and /proc scan).
struct KillGuard {
    datadir: PathBuf,
}

fn serves(pid: u32, datadir: &Path) -> bool {
    let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let want = format!("--datadir={}", datadir.display());
    cmd.split(|b| *b == 0).any(|a| a == want.as_bytes())
}

impl Drop for KillGuard {
    fn drop(&mut self) {
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return;
        };
        for e in entries.flatten() {
            if let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) {
                if serves(pid, &self.datadir) {
                    unsafe {
                        libc::kill(pid as i32, libc::SIGKILL);
                    }
                }
            }
        }
    }
}

/// A tablet dir with its server; the guard drops before the dir is removed.
struct TestServer {
    mysqld: Mysqld,
    _guard: KillGuard,
    _dir: tempfile::TempDir,
}

impl TestServer {
    fn new(uid: u32) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("cairn-mysqld")
            .tempdir()
            .unwrap();
        let port = free_port().unwrap();
        let cfg = MysqldConfig::new(
            dir.path().join("t"),
            port,
            "127.0.0.1".into(),
            server_id_for_uid(uid),
        );
        let mysqld = Mysqld::new(cfg).expect("a MariaDB server on PATH");
        let guard = KillGuard {
            datadir: mysqld.data_dir(),
        };
        TestServer {
            mysqld,
            _guard: guard,
            _dir: dir,
        }
    }

    /// Another `Mysqld` for the same tablet dir and port (a restarted agent).
    fn second_handle(&self) -> Mysqld {
        Mysqld::new(self.mysqld.config().clone()).unwrap()
    }

    async fn init_and_start(&mut self) {
        let t = Instant::now();
        assert!(
            self.mysqld.init_if_needed().await.unwrap(),
            "fresh dir is initialised"
        );
        let init = t.elapsed();
        self.mysqld.start().await.unwrap();
        eprintln!(
            "uid {}: init {:?}, start {:?}",
            self.mysqld.config().server_id,
            init,
            t.elapsed() - init
        );
    }
}

async fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    wait_for(what, timeout, || {
        let done = f();
        async move { Ok(done.then_some(())) }
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_start_query_shutdown() {
    with_timeout(async {
        let mut s = TestServer::new(1);
        // A crashed initialisation leaves data.init-tmp behind; it is redone.
        let leftover = s.mysqld.config().tablet_dir.join("data.init-tmp");
        std::fs::create_dir_all(leftover.join("junk")).unwrap();
        s.init_and_start().await;
        assert!(!leftover.exists());
        assert!(s.mysqld.is_running());
        assert!(s.mysqld.socket_path().ends_with("t/mysql.sock"));
        assert!(s.mysqld.socket_path().exists());

        let m = &s.mysqld;
        assert!(m.version().await.unwrap().contains("MariaDB"));
        assert!(m.is_read_only().await.unwrap(), "servers start read-only");
        m.set_read_only(false).await.unwrap();
        assert!(!m.is_read_only().await.unwrap());
        assert_eq!(m.replication_status().await.unwrap(), None);
        assert_eq!(m.gtid_position().await.unwrap(), "");
        m.exec("CREATE DATABASE app").await.unwrap();
        m.exec("CREATE TABLE app.t (id INT PRIMARY KEY)")
            .await
            .unwrap();
        m.exec("INSERT INTO app.t VALUES (1), (2)").await.unwrap();
        let n: Option<i64> = m.query_first("SELECT COUNT(*) FROM app.t").await.unwrap();
        assert_eq!(n, Some(2));
        let pos = m.gtid_position().await.unwrap();
        assert_eq!(pos, "0-1-3");
        assert_eq!(m.position().await.unwrap(), "MariaDB/0-1-3");
        // Errors say what failed.
        let err = m.exec("SELECT * FROM app.missing").await.unwrap_err();
        assert!(format!("{err:#}").contains("app.missing"), "{err:#}");

        s.mysqld.shutdown(Duration::from_secs(30)).await.unwrap();
        assert!(!s.mysqld.is_running());
        // Idempotent.
        s.mysqld.shutdown(Duration::from_secs(30)).await.unwrap();
        assert!(s.mysqld.conn().await.is_err());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_reuses_the_data_dir() {
    with_timeout(async {
        let mut s = TestServer::new(2);
        s.init_and_start().await;
        s.mysqld.exec("CREATE DATABASE keep").await.unwrap();
        s.mysqld
            .exec("CREATE TABLE keep.t (v VARCHAR(10))")
            .await
            .unwrap();
        s.mysqld
            .exec("INSERT INTO keep.t VALUES ('survives')")
            .await
            .unwrap();
        s.mysqld.shutdown(Duration::from_secs(30)).await.unwrap();

        assert!(
            !s.mysqld.init_if_needed().await.unwrap(),
            "a non-empty data dir is reused"
        );
        let t = Instant::now();
        s.mysqld.start().await.unwrap();
        eprintln!("restart took {:?}", t.elapsed());
        let v: Option<String> = s.mysqld.query_first("SELECT v FROM keep.t").await.unwrap();
        assert_eq!(v.as_deref(), Some("survives"));
        s.mysqld.shutdown(Duration::from_secs(30)).await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_agent_adopts_a_running_server() {
    with_timeout(async {
        let mut s = TestServer::new(3);
        s.init_and_start().await;
        let pid = s.mysqld.pid().unwrap();

        // The agent was kill -9ed; a new one starts with a fresh Mysqld.
        let mut again = s.second_handle();
        assert!(!again.is_running(), "a fresh handle tracks nothing");
        assert!(!again.init_if_needed().await.unwrap());
        again.start().await.unwrap();
        assert_eq!(again.pid(), Some(pid), "adopted, not started twice");
        assert!(again.version().await.unwrap().contains("MariaDB"));

        // The adopter can stop it; the original handle notices (and reaps its child).
        again.shutdown(Duration::from_secs(30)).await.unwrap();
        assert!(!again.is_running());
        wait_until(
            "the first handle to see the exit",
            Duration::from_secs(5),
            || !s.mysqld.is_running(),
        )
        .await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_server_is_noticed_and_restarted() {
    with_timeout(async {
        let mut s = TestServer::new(4);
        s.init_and_start().await;
        s.mysqld.exec("CREATE DATABASE crash").await.unwrap();
        s.mysqld
            .exec("CREATE TABLE crash.t (id INT PRIMARY KEY)")
            .await
            .unwrap();
        s.mysqld
            .exec("INSERT INTO crash.t VALUES (7)")
            .await
            .unwrap();
        let pid = s.mysqld.pid().unwrap();
        unsafe {
            libc::kill(pid as i32, libc::SIGKILL);
        }
        wait_until("mysqld to be seen dead", Duration::from_secs(5), || {
            !s.mysqld.is_running()
        })
        .await;

        let t = Instant::now();
        s.mysqld.start().await.unwrap();
        eprintln!("restart after SIGKILL took {:?}", t.elapsed());
        let new_pid = s.mysqld.pid().unwrap();
        assert_ne!(new_pid, pid);
        let v: Option<i64> = s
            .mysqld
            .query_first("SELECT id FROM crash.t")
            .await
            .unwrap();
        assert_eq!(v, Some(7), "committed row survives crash recovery");
        s.mysqld.shutdown(Duration::from_secs(30)).await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn primary_to_replica_by_gtid() {
    with_timeout(async {
        let (mut p, mut r) = (TestServer::new(101), TestServer::new(102));
        tokio::join!(p.init_and_start(), r.init_and_start());
        let (pm, rm) = (&p.mysqld, &r.mysqld);
        let password = r#"re'pl "pw" \ ;--"#;

        pm.set_read_only(false).await.unwrap();
        pm.ensure_replication_user("repl", password).await.unwrap();
        // Idempotent, and updates the password.
        pm.ensure_replication_user("repl", password).await.unwrap();
        pm.exec("CREATE DATABASE app").await.unwrap();
        pm.exec("CREATE TABLE app.t (id INT PRIMARY KEY, v TEXT)")
            .await
            .unwrap();
        pm.exec("INSERT INTO app.t VALUES (1, 'before')")
            .await
            .unwrap();
        // User management stays out of the binlog.
        assert_eq!(pm.gtid_position().await.unwrap(), "0-101-3");

        rm.start_replication_from("127.0.0.1", pm.port(), "repl", password)
            .await
            .unwrap();
        let pos = pm.position().await.unwrap();
        assert!(
            rm.wait_for_position(&pos, Duration::from_secs(30))
                .await
                .unwrap(),
            "replica caught up to {pos}"
        );
        pm.exec("INSERT INTO app.t VALUES (2, 'after')")
            .await
            .unwrap();
        let pos = pm.position().await.unwrap();
        assert!(rm
            .wait_for_position(&pos, Duration::from_secs(30))
            .await
            .unwrap());
        let rows: Vec<(i64, String)> = rm
            .query("SELECT id, v FROM app.t ORDER BY id")
            .await
            .unwrap();
        assert_eq!(rows, vec![(1, "before".into()), (2, "after".into())]);
        assert_eq!(
            rm.gtid_position().await.unwrap(),
            pm.gtid_position().await.unwrap()
        );

        let st = rm
            .replication_status()
            .await
            .unwrap()
            .expect("configured as a replica");
        assert!(st.io_running && st.sql_running, "{st:?}");
        assert!(st.lag_seconds.is_some_and(|l| l < 60), "{st:?}");
        assert_eq!(st.last_error, None);
        assert_eq!(st.primary_host.as_deref(), Some("127.0.0.1"));
        assert_eq!(st.primary_port, Some(pm.port()));
        assert!(rm.is_read_only().await.unwrap(), "replica stays read-only");

        rm.stop_replication().await.unwrap();
        let st = rm.replication_status().await.unwrap().unwrap();
        assert!(!st.io_running && !st.sql_running);
        assert_eq!(st.lag_seconds, None);

        // Restore-style positioning: forget everything, start from the primary's position.
        rm.set_replication_position(&pos).await.unwrap();
        assert_eq!(rm.replication_status().await.unwrap(), None);
        assert_eq!(
            rm.gtid_position().await.unwrap(),
            pm.gtid_position().await.unwrap()
        );
        rm.start_replication_from("127.0.0.1", pm.port(), "repl", password)
            .await
            .unwrap();
        pm.exec("INSERT INTO app.t VALUES (3, 'restored')")
            .await
            .unwrap();
        let pos = pm.position().await.unwrap();
        assert!(rm
            .wait_for_position(&pos, Duration::from_secs(30))
            .await
            .unwrap());
        let n: Option<i64> = rm.query_first("SELECT COUNT(*) FROM app.t").await.unwrap();
        assert_eq!(n, Some(3));

        // Failover: the replica becomes the primary, the old primary follows it.
        rm.reset_replication().await.unwrap();
        assert_eq!(rm.replication_status().await.unwrap(), None);
        rm.set_read_only(false).await.unwrap();
        pm.set_read_only(true).await.unwrap();
        rm.ensure_replication_user("repl", password).await.unwrap();
        rm.exec("INSERT INTO app.t VALUES (4, 'new primary')")
            .await
            .unwrap();
        // The demoted primary's own writes are in its binlog, not in gtid_slave_pos.
        pm.adopt_binlog_position_for_replication().await.unwrap();
        pm.start_replication_from("127.0.0.1", rm.port(), "repl", password)
            .await
            .unwrap();
        let pos = rm.position().await.unwrap();
        assert!(pm
            .wait_for_position(&pos, Duration::from_secs(30))
            .await
            .unwrap());
        let n: Option<i64> = pm.query_first("SELECT COUNT(*) FROM app.t").await.unwrap();
        assert_eq!(n, Some(4));
        let st = pm.replication_status().await.unwrap().unwrap();
        assert!(
            st.io_running && st.sql_running && st.last_error.is_none(),
            "{st:?}"
        );

        rm.reset_replication().await.unwrap();
        // A wrong password shows up as an IO error, never the password.
        rm.start_replication_from("127.0.0.1", pm.port(), "repl", "wrong'pw")
            .await
            .unwrap();
        let st = Wait::new("a replication error", Duration::from_secs(10))
            .every(Duration::from_millis(100))
            .fail_fast()
            .until(|| async {
                let st = rm.replication_status().await?;
                Ok(st.filter(|s| s.last_error.is_some()))
            })
            .await
            .unwrap();
        assert!(!st.io_running, "{st:?}");
        let e = st.last_error.unwrap();
        assert!(e.contains("IO thread") && !e.contains("wrong'pw"), "{e}");

        p.mysqld.shutdown(Duration::from_secs(30)).await.unwrap();
        r.mysqld.shutdown(Duration::from_secs(30)).await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_start_quotes_the_error_log() {
    with_timeout(async {
        let mut s = TestServer::new(5);
        assert!(s.mysqld.init_if_needed().await.unwrap());
        // Hold the server's port so its bind fails.
        let _busy = std::net::TcpListener::bind(("127.0.0.1", s.mysqld.port())).unwrap();
        let t = Instant::now();
        let err = s.mysqld.start().await.unwrap_err();
        let msg = format!("{err:#}");
        eprintln!("failed start took {:?}: {msg}", t.elapsed());
        assert!(msg.contains("exited"), "{msg}");
        assert!(msg.contains("mysqld.err"), "{msg}");
        assert!(
            msg.contains("Address already in use") || msg.contains("Bind on TCP/IP port"),
            "{msg}"
        );
        assert!(!s.mysqld.is_running());

        // Starting without a data dir is refused clearly.
        let empty = TestServer::new(6);
        let mut m = empty.second_handle();
        let err = m.start().await.unwrap_err();
        assert!(
            format!("{err:#}").contains("initialise it first"),
            "{err:#}"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passwords_with_quotes_work_and_stay_secret() {
    with_timeout(async {
        let mut s = TestServer::new(7);
        s.init_and_start().await;
        let m = &s.mysqld;
        let password = "it's \"quoted\" \\ and \\' tricky";
        m.ensure_user(
            "app",
            "%",
            &UserAuth::Password(password.into()),
            &["SELECT"],
        )
        .await
        .unwrap();
        // Log in over TCP with exactly that password.
        let opts = mysql_async::OptsBuilder::default()
            .ip_or_hostname("127.0.0.1")
            .tcp_port(m.port())
            .user(Some("app"))
            .pass(Some(password))
            .prefer_socket(false);
        let mut conn = mysql_async::Conn::new(opts).await.unwrap();
        let who: Option<String> = conn.query_first("SELECT CURRENT_USER()").await.unwrap();
        assert_eq!(who.as_deref(), Some("app@%"));
        conn.disconnect().await.unwrap();

        // The backup tool account over unix_socket.
        m.ensure_backup_tool_user("backup", &UserAuth::UnixSocket)
            .await
            .unwrap();
        let grants: Vec<String> = m
            .query("SHOW GRANTS FOR 'backup'@'localhost'")
            .await
            .unwrap();
        assert!(
            grants[0].contains("RELOAD") && grants[0].contains("BINLOG MONITOR"),
            "{grants:?}"
        );

        // A failing statement that carries the password names it redacted.
        let long_host = "h".repeat(300);
        let err = m
            .start_replication_from(&long_host, 1, "repl", password)
            .await
            .unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains("<redacted>"), "{msg}");
        assert!(!msg.contains("tricky"), "{msg}");

        // A bad privilege never reaches the server.
        assert!(m
            .ensure_user(
                "x",
                "%",
                &UserAuth::UnixSocket,
                &["ALL; DROP DATABASE mysql"]
            )
            .await
            .is_err());
        s.mysqld.shutdown(Duration::from_secs(30)).await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_kills_a_hung_server_after_the_timeout() {
    with_timeout(async {
        let mut s = TestServer::new(8);
        s.init_and_start().await;
        let pid = s.mysqld.pid().unwrap();
        // A stopped process ignores SIGTERM until it is continued; SIGKILL still works.
        unsafe {
            libc::kill(pid as i32, libc::SIGSTOP);
        }
        let t = Instant::now();
        s.mysqld.shutdown(Duration::from_secs(1)).await.unwrap();
        let took = t.elapsed();
        assert!(
            took >= Duration::from_secs(1) && took < Duration::from_secs(10),
            "{took:?}"
        );
        assert!(!s.mysqld.is_running());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_initialisation_quotes_its_output() {
    with_timeout(async {
        let s = TestServer::new(9);
        let mut cfg = s.mysqld.config().clone();
        cfg.innodb_buffer_pool_size = "not-a-size".into();
        let mut m = Mysqld::new(cfg).unwrap();
        let err = m.init_if_needed().await.unwrap_err();
        let msg = format!("{err:#}");
        eprintln!("failed init: {msg}");
        assert!(
            msg.contains("errors from") && msg.contains("mysqld-init.log"),
            "{msg}"
        );
        assert!(msg.contains("not-a-size"), "{msg}");
        assert!(!m.data_dir().exists(), "no half-initialised data dir");
    })
    .await;
}
