//! Kills what a [`super::Cluster`] left running: every process (agents, mariadbd,
//! mariabackup, coordinators) whose command line names a path inside the
//! cluster's own temporary directory. A test that fails (a panic between spawning
//! a tablet and keeping its handle, an agent killed while it restarted mysqld)
//! otherwise leaves orphaned servers behind. Only paths inside that directory
//! match, so processes of other clusters (and other engineers' tests) are never
//! touched.

use std::path::Path;
use std::time::Duration;

/// Pids of live (not zombie) processes, other than this one, with an argument
/// that is `dir`, lies inside it, or is a `--flag=` whose value does.
pub fn processes_under(dir: &Path) -> Vec<i32> {
    let dir = dir.as_os_str().as_encoded_bytes();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return vec![];
    };
    let me = std::process::id() as i32;
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()))
        .filter(|pid| *pid != me && is_live(*pid))
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|cmd| cmd.split(|b| *b == 0).any(|arg| names_path_in(arg, dir)))
        })
        .collect()
}

/// Whether `/proc/<pid>/stat` says the process runs (not a zombie).
fn is_live(pid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let state = stat
        .rfind(')')
        .and_then(|i| stat[i + 1..].split_whitespace().next());
    !matches!(state, None | Some("Z") | Some("X"))
}

/// Whether one argument is `dir`, a path inside it, or `--flag=` such a path.
fn names_path_in(arg: &[u8], dir: &[u8]) -> bool {
    let value = match arg.iter().position(|b| *b == b'=') {
        Some(i) if arg.starts_with(b"-") => &arg[i + 1..],
        _ => arg,
    };
    value.starts_with(dir) && matches!(value.get(dir.len()), None | Some(b'/'))
}

/// SIGKILLs every process [`processes_under`] finds, a few rounds (an agent may
/// have spawned a mysqld just before it died); returns how many were killed.
pub fn kill_processes_under(dir: &Path) -> usize {
    let mut killed = 0;
    for _ in 0..5 {
        let pids = processes_under(dir);
        if pids.is_empty() {
            break;
        }
        for pid in &pids {
            // SAFETY: kill(2) on a pid whose command line names our own temp dir.
            if unsafe { libc::kill(*pid, libc::SIGKILL) } == 0 {
                killed += 1;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    killed
}

#[cfg(test)]
mod tests {
    use std::process::{Command, Stdio};

    use super::*;

    #[test]
    fn an_argument_names_a_path_inside_the_dir_only() {
        let dir = b"/tmp/cairn-cluster-ab12";
        for (arg, want) in [
            (&b"/tmp/cairn-cluster-ab12"[..], true),
            (b"/tmp/cairn-cluster-ab12/tablet-101", true),
            (b"--datadir=/tmp/cairn-cluster-ab12/tablet-101/data", true),
            (b"/tmp/cairn-cluster-ab123/tablet-101", false),
            (b"--datadir=/tmp/cairn-cluster-ab123/data", false),
            (b"/tmp", false),
            (b"x=/tmp/cairn-cluster-ab12/y", false),
            (b"", false),
        ] {
            assert_eq!(
                names_path_in(arg, dir),
                want,
                "{}",
                String::from_utf8_lossy(arg)
            );
        }
    }

    #[test]
    fn only_the_processes_of_this_dir_are_killed() {
        let mine = tempfile::tempdir().unwrap();
        let other = tempfile::tempdir().unwrap();
        let spawn = |d: &Path| {
            let f = d.join("log");
            std::fs::write(&f, "").unwrap();
            Command::new("tail")
                .arg("-f")
                .arg(&f)
                .stdout(Stdio::null())
                .spawn()
                .unwrap()
        };
        let mut a = spawn(mine.path());
        let mut b = spawn(other.path());
        assert_eq!(processes_under(mine.path()), vec![a.id() as i32]);
        assert_eq!(kill_processes_under(mine.path()), 1);
        let st = a.wait().unwrap();
        assert!(!st.success());
        assert!(
            b.try_wait().unwrap().is_none(),
            "another dir's process died"
        );
        assert!(processes_under(mine.path()).is_empty());
        let _ = b.kill();
        let _ = b.wait();
    }
}
