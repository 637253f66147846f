//! Users never depend on cairn to get their data back: the README's "Restoring by
//! hand" script (read from the README itself, so the two cannot drift) restores
//! an encrypted builtin backup (zstd) and an encrypted xtrabackup backup (lz4)
//! from `file` storage, and an encrypted builtin and xtrabackup backup (zstd) from
//! an S3 bucket (moto, under a prefix), with standard tools only (`cp`, the real
//! AWS CLI's `aws s3 cp --recursive`, `jq`, `b3sum`, `age -d`, `zstd -d`,
//! `lz4 -d`, `mbstream -x`, `mariabackup --prepare`); a real mariadbd then starts
//! on each result and serves every row. One cluster and one moto for all four.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use cairn::testkit::{mysql_client, Cluster, MotoServer, TabletProcess, AWS_ENV};

const T: Duration = Duration::from_secs(120);
const BUCKET: &str = "cairn-by-hand";
/// `--s3-backup-storage-root` of the s3 tablet: the URL the operator passes has it.
const S3_ROOT: &str = "fleet/eu";

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
async fn builtin_and_xtrabackup_backups_restore_by_hand_from_file_and_s3_with_standard_tools() {
    let script = readme_script();
    tokio::time::timeout(Duration::from_secs(600), async {
        let moto = MotoServer::start().await.expect("moto");
        moto.create_bucket(BUCKET).unwrap();
        let mut c = Cluster::start(env!("CARGO_BIN_EXE_cairn").into())
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
        // A fourth tablet stores its backups (both engines, zstd) in the bucket.
        let mut s3_flags = moto.flags(BUCKET, None, 2);
        s3_flags.extend(["--s3-backup-storage-root".into(), S3_ROOT.into()]);
        c.use_storage(s3_flags, AWS_ENV);
        let mut s3_spec = c.tablet(403, "ks", "0").unwrap();
        s3_spec.extra = vec!["--backup-encryption-recipient".into(), public.clone()];
        tablets.push(c.spawn_tablet(&s3_spec).unwrap());
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
        let s3_builtin = c
            .cli_ok(&["backup", &s3_spec.alias()])
            .unwrap()
            .trim()
            .to_string();
        let s3_xtra = c
            .cli_ok(&["backup", &s3_spec.alias(), "--backup-engine", "xtrabackup"])
            .unwrap()
            .trim()
            .to_string();
        drop(tablets);

        // What the operator's shell has: credentials and the endpoint in the
        // environment (no AWS config file of this machine's user).
        let mut aws_env: Vec<(&str, String)> =
            AWS_ENV.iter().map(|(k, v)| (*k, v.to_string())).collect();
        aws_env.extend([
            ("AWS_ENDPOINT_URL", moto.endpoint()),
            ("AWS_DEFAULT_REGION", "us-east-1".into()),
            ("AWS_CONFIG_FILE", "/nonexistent".into()),
            ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent".into()),
        ]);
        let out_dir = tempfile::tempdir().unwrap();
        for (name, engine, compression, s3) in [
            (&builtin, "builtin", "zstd", false),
            (&xtra, "xtrabackup", "lz4", false),
            (&s3_builtin, "builtin", "zstd", true),
            (&s3_xtra, "xtrabackup", "zstd", true),
        ] {
            let local = c.backup_root().join("ks/0").join(name);
            let (source, m, case) = if s3 {
                // Nothing of it on local disk: the script must fetch it.
                assert!(!local.exists(), "{name} is in file storage too");
                let (code, body) = moto
                    .get(BUCKET, &format!("{S3_ROOT}/ks/0/{name}/MANIFEST"))
                    .unwrap();
                assert_eq!(code, 200, "{name}: MANIFEST in the bucket: {body}");
                let m: serde_json::Value = serde_json::from_str(&body).unwrap();
                let url = format!("s3://{BUCKET}/{S3_ROOT}/ks/0/{name}");
                (url, m, format!("s3 {engine}"))
            } else {
                let m: serde_json::Value =
                    serde_json::from_slice(&std::fs::read(local.join("MANIFEST")).unwrap())
                        .unwrap();
                (local.display().to_string(), m, format!("file {engine}"))
            };
            assert_eq!(m["BackupMethod"], engine, "{case}");
            assert_eq!(m["CompressionEngine"], compression, "{case}");
            assert_eq!(m["Encryption"], "age", "{case}");
            let datadir = out_dir.path().join(case.replace(' ', "-")).join("data");
            let mut cmd = Command::new("bash");
            cmd.arg("-c")
                .arg(&script)
                .arg("restore-by-hand")
                .arg(&source)
                .arg(&datadir)
                .arg(&key)
                .stdin(Stdio::null());
            if s3 {
                cmd.envs(aws_env.iter().map(|(k, v)| (k, v)));
            }
            let run = cmd.output().unwrap();
            let stderr = String::from_utf8_lossy(&run.stderr);
            assert!(
                run.status.success(),
                "{case}: the README script failed: {stderr}"
            );
            let stdout = String::from_utf8_lossy(&run.stdout);
            let position = m["Position"].as_str().unwrap();
            assert!(stdout.contains(position), "{case}: {stdout}");
            let server = HandServer::start(&datadir).await;
            assert_eq!(server.sql(CHECK), want, "{case}: rows differ");
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
