//! The agent's own environment: which variables its children must not inherit.

/// Prefix of the agent's own environment variables (configuration and secrets such as
/// `CAIRN_REPLICATION_PASSWORD`).
const AGENT_ENV_PREFIX: &str = "CAIRN_";

/// The names of the agent's own `CAIRN_*` variables in this process's environment.
/// The servers and tools it spawns (mysqld, its initialisation script, the backup
/// tools) need none of them, and some are secrets a child would expose in
/// `/proc/PID/environ` or pass on: every spawn removes them (`env_remove`).
pub fn agent_only_env() -> Vec<std::ffi::OsString> {
    agent_only_names(std::env::vars_os().map(|(k, _)| k))
}

/// [`agent_only_env`] over given names; pure.
fn agent_only_names(names: impl Iterator<Item = std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    names
        .filter(|k| {
            k.as_encoded_bytes()
                .starts_with(AGENT_ENV_PREFIX.as_bytes())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn children_get_none_of_the_agents_variables() {
        let names = [
            "CAIRN_REPLICATION_PASSWORD",
            "CAIRN_TOPO_PASSWORD_FILE",
            "CAIRN_FAULT_STORAGE_FAIL_AFTER_BYTES",
            "PATH",
            "HOME",
            "MYSQL_PWD",
            "XCAIRN_OTHER",
            "cairn_lower",
        ]
        .map(std::ffi::OsString::from);
        let got = agent_only_names(names.into_iter());
        assert_eq!(
            got,
            [
                "CAIRN_REPLICATION_PASSWORD",
                "CAIRN_TOPO_PASSWORD_FILE",
                "CAIRN_FAULT_STORAGE_FAIL_AFTER_BYTES",
            ]
            .map(std::ffi::OsString::from)
        );
    }
}
