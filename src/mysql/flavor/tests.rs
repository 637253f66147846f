//! Unit tests of [`super`]: every statement and parse the flavor builds.

use super::*;

#[test]
fn quoting_escapes_quotes_backslashes_and_controls() {
    assert_eq!(quote_string("plain"), "'plain'");
    assert_eq!(quote_string("it's"), r"'it\'s'");
    assert_eq!(quote_string(r#"a"b\c"#), r#"'a\"b\\c'"#);
    assert_eq!(quote_string("x\0y\nz\r\x1a"), r"'x\0y\nz\r\Z'");
    // A classic injection stays one literal.
    assert_eq!(
        quote_string("'; DROP TABLE t; --"),
        r"'\'; DROP TABLE t; --'"
    );
    // Backslash before a quote cannot unescape it.
    assert_eq!(quote_string(r"\'"), r"'\\\''");
    assert_eq!(quote_account("repl", "%"), "'repl'@'%'");
}

#[test]
fn change_primary_quotes_everything() {
    let sql = Flavor::MariaDB.change_primary_sql("db'1", 3310, "re\\pl", "p'w\"d");
    assert_eq!(
        sql,
        r#"CHANGE MASTER TO MASTER_HOST='db\'1', MASTER_PORT=3310, MASTER_USER='re\\pl', MASTER_PASSWORD='p\'w\"d', MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1"#
    );
}

#[test]
fn executed_position_merges_binlog_and_slave_pos() {
    let f = Flavor::MariaDB;
    // Freshly restored replica: empty binlog, slave pos from the backup.
    assert_eq!(
        f.executed_position_from_row(&[Some("".into()), Some("0-1-42".into())])
            .unwrap(),
        "0-1-42"
    );
    // Primary: its own writes are only in the binlog.
    assert_eq!(
        f.executed_position_from_row(&[Some("0-2-50".into()), Some("0-1-42".into())])
            .unwrap(),
        "0-2-50"
    );
    assert_eq!(f.executed_position_from_row(&[None, None]).unwrap(), "");
}

#[test]
fn positions_carry_the_flavor_prefix() {
    let f = Flavor::MariaDB;
    assert_eq!(f.format_position("0-1-5"), "MariaDB/0-1-5");
    assert_eq!(f.parse_position("MariaDB/0-1-5").unwrap(), "0-1-5");
    assert_eq!(f.parse_position("0-1-5").unwrap(), "0-1-5");
    assert_eq!(f.parse_position("MariaDB/").unwrap(), "");
    assert!(f
        .parse_position("MySQL56/3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5")
        .is_err());
    assert_eq!(
        f.set_replication_position_sqls("MariaDB/0-1-5")
            .unwrap()
            .last()
            .unwrap(),
        "SET GLOBAL gtid_slave_pos = '0-1-5'"
    );
    assert!(f.set_replication_position_sqls("0-1-5' OR 1").is_err());
    assert_eq!(
        f.wait_for_position_sql("0-1-5", 3).unwrap(),
        "SELECT MASTER_GTID_WAIT('0-1-5', 3)"
    );
    assert_eq!(
        f.resume_from_executed_sqls("MariaDB/0-2-9,1-1-5").unwrap(),
        ["STOP SLAVE", "SET GLOBAL gtid_slave_pos = '0-2-9,1-1-5'"]
    );
}

#[test]
fn version_output_classifies_flavor() {
    let (f, v) = Flavor::from_version_output(
        "/usr/sbin/mariadbd  Ver 10.11.6-MariaDB-0+deb12u1 for debian-linux-gnu on x86_64 (Debian 12)\n",
    )
    .unwrap();
    assert_eq!(f, Flavor::MariaDB);
    assert_eq!(v, "10.11.6-MariaDB-0+deb12u1");
    let err = Flavor::from_version_output(
        "/usr/sbin/mysqld  Ver 8.0.36 for Linux on x86_64 (MySQL Community Server - GPL)",
    )
    .unwrap_err();
    assert!(err.to_string().contains("MySQL"), "{err}");
    assert!(Flavor::from_version_output("garbage").is_err());
}

#[test]
fn install_db_args_add_user_only_as_root() {
    let f = Flavor::MariaDB;
    let args = f.install_db_args(
        Path::new("/d/data"),
        true,
        &["--innodb-log-file-size=48M".into()],
    );
    let args: Vec<String> = args
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        args,
        [
            "--no-defaults",
            "--datadir=/d/data",
            "--auth-root-authentication-method=socket",
            "--skip-test-db",
            "--user=root",
            "--innodb-log-file-size=48M"
        ]
    );
    assert!(!f
        .install_db_args(Path::new("/d"), false, &[])
        .iter()
        .any(|a| a == "--user=root"));
}

#[test]
fn user_sqls_quote_and_validate() {
    let f = Flavor::MariaDB;
    let sqls = f
        .ensure_user_sqls(
            "repl",
            "%",
            &UserAuth::Password("pa'ss".into()),
            f.replication_privileges(),
        )
        .unwrap();
    assert_eq!(
        sqls,
        [
            r"CREATE USER IF NOT EXISTS 'repl'@'%' IDENTIFIED BY 'pa\'ss'",
            r"ALTER USER 'repl'@'%' IDENTIFIED BY 'pa\'ss'",
            "GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO 'repl'@'%'",
        ]
    );
    let sqls = f
        .ensure_user_sqls("bk", "localhost", &UserAuth::UnixSocket, &["RELOAD"])
        .unwrap();
    assert_eq!(
        sqls[0],
        "CREATE USER IF NOT EXISTS 'bk'@'localhost' IDENTIFIED VIA unix_socket"
    );
    assert!(f
        .ensure_user_sqls("x", "%", &UserAuth::UnixSocket, &["ALL; DROP"])
        .is_err());
    assert!(f
        .ensure_user_sqls("", "%", &UserAuth::UnixSocket, &[])
        .is_err());
    assert_eq!(
        format!("{:?}", UserAuth::Password("secret".into())),
        "Password(<redacted>)"
    );
}

fn row(pairs: &[(&str, Option<&str>)]) -> HashMap<String, Option<String>> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.map(str::to_string)))
        .collect()
}

#[test]
fn replication_status_parses_running_replica() {
    let r = row(&[
        ("Slave_IO_Running", Some("Yes")),
        ("Slave_SQL_Running", Some("Yes")),
        ("Seconds_Behind_Master", Some("0")),
        ("Last_IO_Error", Some("")),
        ("Last_SQL_Error", Some("")),
        ("Master_Host", Some("127.0.0.1")),
        ("Master_Port", Some("3310")),
        ("Gtid_IO_Pos", Some("0-1-7")),
    ]);
    let s = Flavor::MariaDB.parse_replication_status(&r).unwrap();
    assert_eq!(
        s,
        ReplicationStatus {
            io_running: true,
            sql_running: true,
            lag_seconds: Some(0),
            last_error: None,
            primary_host: Some("127.0.0.1".into()),
            primary_port: Some(3310),
            gtid_io_pos: Some("0-1-7".into()),
            io_error: None,
            sql_error: None,
        }
    );
}

#[test]
fn replication_status_reads_error_numbers() {
    // (IO errno, IO error, SQL errno, SQL error, io_error, sql_error, last_error)
    type Want = (
        Option<(u32, &'static str)>,
        Option<(u32, &'static str)>,
        Option<&'static str>,
    );
    let cases: Vec<([Option<&str>; 4], Want)> = vec![
        (
            [Some("0"), Some(""), Some("0"), Some("")],
            (None, None, None),
        ),
        (
            [Some("0"), Some(""), Some("1062"), Some("Could not execute Write_rows_v1 event; Duplicate entry '7'")],
            (
                None,
                Some((1062, "Could not execute Write_rows_v1 event; Duplicate entry '7'")),
                Some("SQL thread error 1062: Could not execute Write_rows_v1 event; Duplicate entry '7'"),
            ),
        ),
        (
            [Some("2003"), Some("error connecting to master"), None, None],
            (
                Some((2003, "error connecting to master")),
                None,
                Some("IO thread error 2003: error connecting to master"),
            ),
        ),
        // A number without a message, and a number that does not parse.
        (
            [Some("1236"), Some(""), Some("x"), Some("boom")],
            (
                Some((1236, "")),
                Some((0, "boom")),
                Some("IO thread error 1236: ; SQL thread: boom"),
            ),
        ),
    ];
    for ([io_no, io_msg, sql_no, sql_msg], (io, sql, last)) in cases {
        let r = row(&[
            ("Slave_IO_Running", Some("Yes")),
            ("Slave_SQL_Running", Some("No")),
            ("Last_IO_Errno", io_no),
            ("Last_IO_Error", io_msg),
            ("Last_SQL_Errno", sql_no),
            ("Last_SQL_Error", sql_msg),
        ]);
        let s = Flavor::MariaDB.parse_replication_status(&r).unwrap();
        let te = |t: Option<(u32, &str)>| {
            t.map(|(errno, m)| ThreadError {
                errno,
                message: m.into(),
            })
        };
        assert_eq!(s.io_error, te(io), "{r:?}");
        assert_eq!(s.sql_error, te(sql), "{r:?}");
        assert_eq!(s.last_error.as_deref(), last, "{r:?}");
    }
}

#[test]
fn replication_status_parses_broken_replica() {
    let r = row(&[
        ("Slave_IO_Running", Some("Connecting")),
        ("Slave_SQL_Running", Some("No")),
        ("Seconds_Behind_Master", None),
        ("Last_IO_Error", Some("error connecting to master")),
        ("Last_SQL_Error", Some("Duplicate entry")),
        ("Master_Port", Some("")),
    ]);
    let s = Flavor::MariaDB.parse_replication_status(&r).unwrap();
    assert!(!s.io_running && !s.sql_running);
    assert_eq!(s.lag_seconds, None);
    assert_eq!(
        s.last_error.as_deref(),
        Some("IO thread: error connecting to master; SQL thread: Duplicate entry")
    );
    assert_eq!(s.primary_port, None);
    assert!(Flavor::MariaDB.parse_replication_status(&row(&[])).is_err());
    let bad_lag = row(&[
        ("Slave_IO_Running", Some("Yes")),
        ("Slave_SQL_Running", Some("Yes")),
        ("Seconds_Behind_Master", Some("-1")),
    ]);
    assert!(Flavor::MariaDB.parse_replication_status(&bad_lag).is_err());
}

#[test]
fn replication_status_accepts_mysql_8_column_names() {
    let r = row(&[
        ("Replica_IO_Running", Some("Yes")),
        ("Replica_SQL_Running", Some("No")),
        ("Seconds_Behind_Source", Some("12")),
    ]);
    let s = Flavor::MariaDB.parse_replication_status(&r).unwrap();
    assert!(s.io_running && !s.sql_running);
    assert_eq!(s.lag_seconds, Some(12));
}
