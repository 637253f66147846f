//! etcd auth for tests, set up the way an operator would, with `etcdctl`: a
//! `root` user (which auth requires), a role granting readwrite on one key
//! prefix only, a user holding just that role, then `auth enable`.

use super::{etcdctl, EtcdServer};

/// The users and the role of an auth-enabled test etcd.
#[derive(Debug, Clone)]
pub struct AuthSetup {
    /// Password of `root`.
    pub root_password: String,
    /// The limited user cairn runs as.
    pub user: String,
    /// Its password.
    pub password: String,
    /// Its only role.
    pub role: String,
    /// The key prefix the role may read and write (e.g. `/cairn/`).
    pub prefix: String,
}

impl AuthSetup {
    /// `cairn` with role `cairn-rw`, readwrite on `prefix` only.
    pub fn limited_to(prefix: &str) -> AuthSetup {
        AuthSetup {
            root_password: "root-test-pw".into(),
            user: "cairn".into(),
            password: "cairn-test-pw".into(),
            role: "cairn-rw".into(),
            prefix: prefix.into(),
        }
    }
}

/// Creates root, the role and the user, then enables auth on the cluster of
/// `members`; from then on they log in as root for readiness checks and
/// [`etcdctl`].
pub fn enable_auth(members: &mut [&mut EtcdServer], setup: &AuthSetup) -> anyhow::Result<()> {
    {
        let all: Vec<&EtcdServer> = members.iter().map(|m| &**m).collect();
        let root_pw = format!("--new-user-password={}", setup.root_password);
        let user_pw = format!("--new-user-password={}", setup.password);
        etcdctl(&all, &["user", "add", "root", &root_pw])?;
        etcdctl(&all, &["role", "add", "root"])?;
        etcdctl(&all, &["user", "grant-role", "root", "root"])?;
        etcdctl(&all, &["role", "add", &setup.role])?;
        etcdctl(
            &all,
            &[
                "role",
                "grant-permission",
                &setup.role,
                "--prefix=true",
                "readwrite",
                &setup.prefix,
            ],
        )?;
        etcdctl(&all, &["user", "add", &setup.user, &user_pw])?;
        etcdctl(&all, &["user", "grant-role", &setup.user, &setup.role])?;
        etcdctl(&all, &["auth", "enable"])?;
    }
    for m in members.iter_mut() {
        m.set_root_password(Some(setup.root_password.clone()));
    }
    Ok(())
}
