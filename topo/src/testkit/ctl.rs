//! `etcdctl` against test members (TLS flags and root's login filled in) and
//! finding the raft leader with `etcdctl endpoint status`.

use std::process::{Command, Stdio};

use anyhow::{anyhow, bail, Context};

use super::EtcdServer;

/// Runs `etcdctl ARGS…` against `members` (TLS and root's login taken from the
/// first); returns stdout, or fails with etcdctl's stderr.
pub fn etcdctl(members: &[&EtcdServer], args: &[&str]) -> anyhow::Result<String> {
    let first = members
        .first()
        .ok_or_else(|| anyhow!("etcdctl needs at least one member"))?;
    let endpoints = members
        .iter()
        .map(|m| m.url())
        .collect::<Vec<_>>()
        .join(",");
    let mut cmd = Command::new("etcdctl");
    cmd.env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoints}"))
        .arg("--dial-timeout=3s")
        .arg("--command-timeout=5s");
    if let Some(tls) = &first.tls {
        let client = tls.client();
        cmd.arg("--cacert")
            .arg(tls.ca())
            .arg("--cert")
            .arg(client.cert)
            .arg("--key")
            .arg(client.key);
    }
    if let Some(pw) = &first.root_password {
        cmd.arg(format!("--user=root:{pw}"));
    }
    let out = cmd
        .args(args)
        .stdin(Stdio::null())
        .output()
        .context("cannot run `etcdctl` (is it installed and on PATH?)")?;
    if !out.status.success() {
        bail!(
            "etcdctl {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Which of `members` is the raft leader, as `etcdctl endpoint status -w json`
/// reports it (the member whose own id is the leader id it reports). Members
/// that are stopped or frozen must not be passed: etcdctl would wait for them.
pub fn leader_index(members: &[&EtcdServer]) -> anyhow::Result<usize> {
    let out = etcdctl(members, &["endpoint", "status", "-w", "json"])?;
    let statuses: serde_json::Value =
        serde_json::from_str(&out).context("cannot parse `etcdctl endpoint status` output")?;
    let statuses = statuses
        .as_array()
        .ok_or_else(|| anyhow!("`etcdctl endpoint status` did not print a list: {out}"))?;
    for s in statuses {
        let id = s["Status"]["header"]["member_id"].as_u64();
        let leader = s["Status"]["leader"].as_u64();
        if id.is_some() && id == leader {
            let endpoint = s["Endpoint"].as_str().unwrap_or_default();
            if let Some(i) = members.iter().position(|m| m.url() == endpoint) {
                return Ok(i);
            }
        }
    }
    bail!("no member reports itself leader: {out}")
}
