//! `topo snapshot FILE`: saves etcd's snapshot to FILE, verifying etcd's integrity
//! hash, atomically (nothing is left at FILE when anything fails). The file is
//! what `etcdctl snapshot save` writes, so `etcdctl snapshot restore FILE` takes
//! it. Prints one line: `FILE revision=R size_bytes=N sha256=HEX`.

use anyhow::Context;

use super::args::{GlobalArgs, TopoCommand};
use crate::coordinator::etcd_snapshot::save_to_file;

/// Runs one `topo` subcommand.
pub async fn run(g: &GlobalArgs, cmd: TopoCommand) -> anyhow::Result<()> {
    match cmd {
        TopoCommand::Snapshot { file } => {
            let topo = super::connect_admin(g).await?;
            let info = save_to_file(&topo, &file)
                .await
                .with_context(|| format!("saving an etcd snapshot to {}", file.display()))?;
            println!(
                "{} revision={} size_bytes={} sha256={}",
                file.display(),
                info.revision,
                info.size_bytes,
                info.sha256
            );
            Ok(())
        }
    }
}
