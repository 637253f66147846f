//! The operator's toolbox around the binary: shell completions, checked with the
//! real shells where they are installed.

use std::process::Command;

fn cairn(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(args)
        .output()
        .expect("run cairn")
}

/// Completes `words` (the last one partial) with the bash script cairn prints.
fn bash_complete(script: &str, words: &[&str]) -> Vec<String> {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("cairn.bash");
    std::fs::write(&path, script).expect("write completion script");
    let words_q: Vec<String> = words.iter().map(|w| format!("'{w}'")).collect();
    let prog = format!(
        "source '{}'\nCOMP_WORDS=({})\nCOMP_CWORD={}\nCOMP_LINE='{}'\nCOMP_POINT=${{#COMP_LINE}}\n\
         _cairn cairn '{}' '{}'\nprintf '%s\\n' \"${{COMPREPLY[@]}}\"\n",
        path.display(),
        words_q.join(" "),
        words.len() - 1,
        words.join(" "),
        words[words.len() - 1],
        words[words.len() - 2],
    );
    let out = Command::new("bash")
        .args(["--norc", "--noprofile", "-c", &prog])
        .output()
        .expect("run bash");
    assert!(
        out.status.success(),
        "bash: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

#[test]
fn bash_completes_subcommands_and_flags() {
    let out = cairn(&["completions", "bash"]);
    assert!(out.status.success());
    let script = String::from_utf8(out.stdout).expect("utf8 script");

    let subs = bash_complete(&script, &["cairn", "list-b"]);
    assert_eq!(subs, vec!["list-backups"], "{subs:?}");

    let subs = bash_complete(&script, &["cairn", "sched"]);
    assert_eq!(subs, vec!["schedule"], "{subs:?}");

    let flags = bash_complete(&script, &["cairn", "list-backups", "--s3-backup-storage-b"]);
    assert_eq!(flags, vec!["--s3-backup-storage-bucket"], "{flags:?}");

    let engines = bash_complete(&script, &["cairn", "backup", "--backup-engine", ""]);
    for want in ["builtin", "xtrabackup"] {
        assert!(engines.iter().any(|e| e == want), "{engines:?}");
    }
}

#[test]
fn zsh_and_fish_scripts_name_every_subcommand_and_bad_shells_are_refused() {
    for shell in ["zsh", "fish"] {
        let out = cairn(&["completions", shell]);
        assert!(out.status.success(), "{shell}");
        let script = String::from_utf8_lossy(&out.stdout);
        for sub in [
            "list-backups",
            "restore-from-backup",
            "schedule",
            "coordinator",
        ] {
            assert!(script.contains(sub), "{shell} script lacks {sub}");
        }
    }
    let out = cairn(&["completions", "tcsh"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("tcsh") && err.contains("bash"), "{err}");
    assert!(out.stdout.is_empty());
}
