//! Users never depend on cairn to get their data back: the README's "Restoring by
//! hand" script (read from the README itself, so the two cannot drift) restores
//! an encrypted builtin backup (zstd) and an encrypted xtrabackup backup (lz4)
//! with standard tools only (`cp`, `jq`, `b3sum`, `age -d`, `zstd -d`,
//! `lz4 -d`, `mbstream -x`, `mariabackup --prepare`); a real mariadbd then starts
//! on each result and serves every row.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use cairn::testkit::{mysql_client, Cluster, TabletProcess};

const T: Duration = Duration::from_secs(120);

/// The one `bash` block of the README's "Restoring by hand" section.
fn readme_script() -> String {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("reading README.md");
    let section = readme
        .split("\n## Restoring by hand\n")
        .nth(1)
        .expect("README has a \"Restoring by hand\" section");
    let section = section.split("\n## ").next().unwrap();
    let blocks: Vec<&str> = section.split("```bash\n").skip(1).collect();
    assert_eq!(blocks.len(), 1, "one bash block in the section");
    blocks[0].split("\n```").next().unwrap().to_string()
}

/// A key pair made by the real `age-keygen`: (identity file, public key).
fn keygen(dir: &Path) -> (PathBuf, String) {
    let path = dir.join("backup.key");
    let out = Command::new("age-keygen")
        .arg("-o")
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let public = std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("# public key: ").map(str::to_string))
        .unwrap();
    (path, public)
}

/// A mariadbd started by hand on a restored data directory; killed on drop.
struct HandServer {
    child: Child,
    socket: PathBuf,
}

impl HandServer {
    async fn start(datadir: &Path) -> HandServer {
        let run = datadir.with_extension("run");
        std::fs::create_dir_all(&run).unwrap();
        let socket = run.join("mysql.sock");
        let mut cmd = Command::new("mariadbd");
        cmd.arg("--no-defaults")
            .arg(format!("--datadir={}", datadir.display()))
            .arg(format!("--socket={}", socket.display()))
            .arg(format!("--pid-file={}", run.join("mysqld.pid").display()))
            .arg(format!("--log-error={}", run.join("error.log").display()))
            .arg(format!("--tmpdir={}", run.display()))
            .arg("--skip-networking");
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            cmd.arg("--user=root");
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting mariadbd (PATH needs /usr/sbin)");
        let mut s = HandServer { child, socket };
        let log = run.join("error.log");
        let deadline = std::time::Instant::now() + T;
        loop {
            if let Ok(Some(status)) = s.child.try_wait() {
                panic!(
                    "mariadbd exited {status}: {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            if mysql_client(&s.socket, "SELECT 1").is_ok() {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "mariadbd did not serve the hand-restored data: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        s
    }

    fn sql(&self, sql: &str) -> String {
        mysql_client(&self.socket, sql).unwrap().trim().to_string()
    }
}

impl Drop for HandServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const CHECK: &str = "SELECT COUNT(*), SUM(CRC32(v)) FROM app.t";

#[tokio::test(flavor = "multi_thread")]
async fn builtin_and_xtrabackup_backups_restore_by_hand_with_standard_tools() {
    let script = readme_script();
    tokio::time::timeout(Duration::from_secs(600), async {
        let c = Cluster::start(env!("CARGO_BIN_EXE_cairn").into())
            .await
            .expect("cluster");
        let topo = c.topo().await.unwrap();
        let keys = tempfile::tempdir().unwrap();
        let (key, public) = keygen(keys.path());
        let p_spec = c.tablet(400, "ks", "0").unwrap();
        let mut zstd_spec = c.tablet(401, "ks", "0").unwrap();
        zstd_spec.extra = vec!["--backup-encryption-recipient".into(), public.clone()];
        let mut lz4_spec = c.tablet(402, "ks", "0").unwrap();
        lz4_spec.extra = vec![
            "--backup-encryption-recipient".into(),
            public.clone(),
            "--compression-engine".into(),
            "lz4".into(),
        ];
        let mut tablets: Vec<TabletProcess> = [&p_spec, &zstd_spec, &lz4_spec]
            .iter()
            .map(|s| c.spawn_tablet(s).unwrap())
            .collect();
        for t in &mut tablets {
            t.wait_healthy(&topo, T).await.unwrap();
        }
        c.cli_ok(&["init-shard-primary", "ks/0", &p_spec.alias()])
            .unwrap();
        tablets[0]
            .sql(
                "CREATE DATABASE app; CREATE TABLE app.t (id INT PRIMARY KEY, v TEXT); \
                 INSERT INTO app.t SELECT seq, REPEAT(MD5(seq), 20) FROM app.seq_1_to_3000",
            )
            .unwrap();
        let want = tablets[0].sql(CHECK).unwrap().trim().to_string();
        for t in &tablets[1..] {
            t.wait_value("SELECT COUNT(*) FROM app.t", "3000", T)
                .await
                .unwrap();
        }
        let builtin = c
            .cli_ok(&["backup", &zstd_spec.alias()])
            .unwrap()
            .trim()
            .to_string();
        let xtra = c
            .cli_ok(&["backup", &lz4_spec.alias(), "--backup-engine", "xtrabackup"])
            .unwrap()
            .trim()
            .to_string();
        drop(tablets);

        let out_dir = tempfile::tempdir().unwrap();
        for (name, engine, compression) in
            [(&builtin, "builtin", "zstd"), (&xtra, "xtrabackup", "lz4")]
        {
            let backup = c.backup_root().join("ks/0").join(name);
            let m: serde_json::Value =
                serde_json::from_slice(&std::fs::read(backup.join("MANIFEST")).unwrap()).unwrap();
            assert_eq!(m["BackupMethod"], engine);
            assert_eq!(m["CompressionEngine"], compression);
            assert_eq!(m["Encryption"], "age");
            let datadir = out_dir.path().join(engine).join("data");
            let run = Command::new("bash")
                .arg("-c")
                .arg(&script)
                .arg("restore-by-hand")
                .arg(&backup)
                .arg(&datadir)
                .arg(&key)
                .stdin(Stdio::null())
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&run.stderr);
            assert!(
                run.status.success(),
                "{engine}: the README script failed: {stderr}"
            );
            let stdout = String::from_utf8_lossy(&run.stdout);
            let position = m["Position"].as_str().unwrap();
            assert!(stdout.contains(position), "{engine}: {stdout}");
            let server = HandServer::start(&datadir).await;
            assert_eq!(server.sql(CHECK), want, "{engine}: rows differ");
        }
        // Without the key, the script fails (age cannot decrypt).
        let datadir = out_dir.path().join("nokey").join("data");
        let run = Command::new("bash")
            .arg("-c")
            .arg(&script)
            .arg("restore-by-hand")
            .arg(c.backup_root().join("ks/0").join(&builtin))
            .arg(&datadir)
            .arg(keys.path().join("missing.key"))
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(!run.status.success());
    })
    .await
    .expect("test timed out");
}
