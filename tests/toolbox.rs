//! The operator's toolbox around the binary: shell completions checked with a real
//! bash, the example systemd units checked with systemd's own verifier, and the
//! example Prometheus alert rules checked and unit-tested with the real `promtool`.
//! (That the rules and the Grafana dashboard name only metrics the coordinator
//! exports is checked against a running coordinator in `tests/status_page.rs`.)

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

/// The example unit files, as shipped.
fn unit(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/systemd")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The example value of `var` given in a unit's comments (continuation lines
/// start with `#     `).
fn example_args(unit: &str, var: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut inside = false;
    for line in unit.lines() {
        let text = line.trim_start_matches('#').trim();
        if let Some(rest) = text.strip_prefix(&format!("{var}=")) {
            inside = true;
            words.extend(rest.split_whitespace().map(String::from));
        } else if inside && line.starts_with("#     ") {
            words.extend(text.split_whitespace().map(String::from));
        } else {
            inside = false;
        }
    }
    assert!(!words.is_empty(), "no example of {var}");
    words
}

/// The unit's ExecStart with `%i` and `$VAR` filled in, without the binary.
fn exec_args(unit: &str, instance: &str, var: &str, example: &[String]) -> Vec<String> {
    let exec = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("ExecStart");
    let mut args = Vec::new();
    for w in exec.split_whitespace().skip(1) {
        if w == format!("${var}") {
            args.extend(example.iter().cloned());
        } else {
            args.push(w.replace("%i", instance));
        }
    }
    args
}

#[test]
fn systemd_units_verify_and_their_flags_exist() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bin = env!("CARGO_BIN_EXE_cairn");
    let cases = [
        (
            "cairn-tablet@.service",
            "cairn-tablet@101.service",
            "CAIRN_TABLET_ARGS",
        ),
        (
            "cairn-coordinator.service",
            "cairn-coordinator.service",
            "CAIRN_COORDINATOR_ARGS",
        ),
    ];
    let mut files = Vec::new();
    for (shipped, as_named, var) in cases {
        let text = unit(shipped);
        // Every flag the unit and its documented example use is one cairn knows:
        // `--help` at the end only prints if everything before it parsed.
        let example = example_args(&text, var);
        let mut args = exec_args(&text, "101", var, &example);
        args.push("--help".into());
        let out = Command::new(bin).args(&args).output().expect("run cairn");
        assert!(
            out.status.success(),
            "{shipped}: cairn {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let path = dir.path().join(as_named);
        std::fs::write(&path, text.replace("/usr/local/bin/cairn", bin)).expect("write unit");
        files.push(path);
    }
    // systemd's own checker: unknown keys, bad values and missing binaries are
    // reported on stderr.
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg("--man=no")
        .args(&files)
        .output()
        .expect("run systemd-analyze (installed by scripts/setup.sh)");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && err.trim().is_empty(), "{err}");
}

fn example_path(rel: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples")
        .join(rel)
}

fn promtool(args: &[&str], dir: &std::path::Path) -> std::process::Output {
    Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run promtool (Debian package prometheus, installed by scripts/setup.sh)")
}

/// The alert names of a rules file (`- alert: NAME` lines).
fn alert_names(rules: &str) -> Vec<String> {
    rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert:"))
        .map(|n| n.trim().to_string())
        .collect()
}

/// The alerts a promtool test file expects to fire somewhere (a case with
/// `exp_alerts` not `[]`) and those it expects quiet somewhere (`exp_alerts: []`).
fn tested_alerts(tests: &str) -> (Vec<String>, Vec<String>) {
    let lines: Vec<&str> = tests.lines().map(str::trim).collect();
    let (mut firing, mut quiet) = (Vec::new(), Vec::new());
    for (i, l) in lines.iter().enumerate() {
        let Some(name) = l.strip_prefix("alertname:") else {
            continue;
        };
        let name = name.trim().to_string();
        match lines.get(i + 1) {
            Some(&"exp_alerts: []") => quiet.push(name),
            Some(n) if n.starts_with("exp_alerts:") => firing.push(name),
            _ => panic!("alertname {name} is not followed by exp_alerts"),
        }
    }
    (firing, quiet)
}

#[test]
fn alert_rules_pass_promtool_and_every_alert_fires_in_its_tests() {
    let dir = example_path("prometheus");
    let out = promtool(&["check", "rules", "alerts.yml"], &dir);
    assert!(
        out.status.success(),
        "promtool check rules: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let out = promtool(&["test", "rules", "alerts_test.yml"], &dir);
    assert!(
        out.status.success(),
        "promtool test rules: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // Every alert has a case where it fires. Each case lists every alert expected
    // at its time, and the per-shard cases carry a healthy shard (ks/good), so a
    // healthy series firing fails them; the global alert is also shown quiet.
    let rules = std::fs::read_to_string(dir.join("alerts.yml")).expect("alerts.yml");
    let tests = std::fs::read_to_string(dir.join("alerts_test.yml")).expect("alerts_test.yml");
    let names = alert_names(&rules);
    for want in [
        "CairnBackupTooOld",
        "CairnDrillFailed",
        "CairnDrillTooOld",
        "CairnArchiveGap",
        "CairnLossWindowTooLarge",
        "CairnNoLeader",
        "CairnJobStuck",
    ] {
        assert!(
            names.iter().any(|n| n == want),
            "no alert {want}: {names:?}"
        );
    }
    let (firing, quiet) = tested_alerts(&tests);
    for n in &names {
        assert!(firing.contains(n), "{n} never fires in alerts_test.yml");
    }
    assert!(quiet.iter().any(|n| n == "CairnNoLeader"), "{quiet:?}");
    assert!(tests.contains("shard=\"good\""));

    // The tests can fail: a rule that no longer fires is caught.
    let tmp = tempfile::tempdir().expect("tempdir");
    let broken = rules.replace(
        "cairn_coordinator_last_drill_success == 0",
        "cairn_coordinator_last_drill_success == 2",
    );
    assert_ne!(broken, rules);
    std::fs::write(tmp.path().join("alerts.yml"), broken).expect("write rules");
    std::fs::write(tmp.path().join("alerts_test.yml"), &tests).expect("write tests");
    let out = promtool(&["test", "rules", "alerts_test.yml"], tmp.path());
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !out.status.success() && said.contains("CairnDrillFailed"),
        "{said}"
    );
}
