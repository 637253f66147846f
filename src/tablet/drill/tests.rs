//! Unit tests of the drill's pure parts (scratch names and settings).

use super::*;

#[test]
fn scratch_names_are_short_and_safe() {
    assert_eq!(
        scratch_name("20261126T010000123-drill-0a1b2c3d"),
        "drill-0a1b2c3d"
    );
    assert_eq!(scratch_name("../x"), "drill-x");
    assert_eq!(scratch_name("a-"), "drill-job");
    assert!(scratch_name(&"z".repeat(100)).len() <= SCRATCH_PREFIX.len() + 16);
}

#[test]
fn scratch_servers_never_log_binlogs_nor_replicate() {
    let base = MysqldConfig::new("/t/101".into(), 3306, "0.0.0.0".into(), 101);
    let c = scratch_config(&base, Path::new("/t/101/drill-x"), 4000, false);
    assert_eq!(c.tablet_dir, Path::new("/t/101/drill-x"));
    assert_eq!((c.port, c.bind_address.as_str()), (4000, "127.0.0.1"));
    for flag in ["--skip-log-bin", "--skip-slave-start", "--read-only=ON"] {
        assert!(c.extra_args.iter().any(|a| a == flag), "{flag}");
    }
    assert_eq!(c.innodb_buffer_pool_size, "32M");
    // To now: a binary log (in the scratch directory), still no replication.
    let c = scratch_config(&base, Path::new("/t/101/drill-x"), 4000, true);
    assert!(!c.extra_args.iter().any(|a| a == "--skip-log-bin"));
    for flag in ["--skip-slave-start", "--read-only=ON"] {
        assert!(c.extra_args.iter().any(|a| a == flag), "{flag}");
    }
}
