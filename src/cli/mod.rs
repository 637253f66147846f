//! The admin commands (Vitess's vtctl) and the plumbing every command shares:
//! logging, connecting to topo, error reporting and exit codes.
//!
//! Each command validates its input (mostly at parse time, see [`args`]), acts only
//! through topo (and backup storage for listing/removal), and waits for the outcome
//! unless told `--no-wait`.

pub mod archive;
pub mod args;
pub mod backups;
pub mod config;
pub mod drill;
pub mod jobs;
pub mod output;
pub mod schedule;
pub mod status;
pub mod tablets;
pub mod topo_snapshot;
pub mod verify;

use std::process::ExitCode;
use std::time::Duration;

use cairn_topo::{Topo, TopoConfig, TopoError};

use args::{Cli, Command, GlobalArgs, LogFormat};

pub use crate::common::UsageError;

/// Prints clap's verdict: help and version to stdout with exit 0, anything else as
/// one `error:` line with exit 2.
pub fn report_usage_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    match e.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            }
        }
        _ => {
            let rendered = e.render().to_string();
            let first = rendered
                .lines()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("error: bad usage")
                .trim();
            let mut line = if first.starts_with("error:") {
                first.to_string()
            } else {
                format!("error: {first}")
            };
            // Still one line, but say what would have been accepted.
            if let Some(clap::error::ContextValue::Strings(valid)) =
                e.get(clap::error::ContextKind::ValidValue)
            {
                line.push_str(&format!("; possible values: {}", valid.join(", ")));
            }
            eprintln!("{line} (see --help)");
            ExitCode::from(2)
        }
    }
}

/// Maps a command's outcome to the contract's exit codes, printing one `error:` line.
pub fn exit_code(outcome: anyhow::Result<()>) -> ExitCode {
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // A bad topo configuration (e.g. an `http://` endpoint with TLS flags)
            // is bad usage wherever it surfaces, agents included.
            let bad_topo_config = e
                .chain()
                .any(|c| matches!(c.downcast_ref::<TopoError>(), Some(TopoError::Config(_))));
            let code = if e.downcast_ref::<UsageError>().is_some() || bad_topo_config {
                2
            } else {
                1
            };
            let msg = format!("{e:#}").replace('\n', " ");
            eprintln!("error: {msg}");
            ExitCode::from(code)
        }
    }
}

/// Logs go to stderr, as text or JSON, filtered by `RUST_LOG` (default `info`).
pub fn init_logging(g: &GlobalArgs) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let _ = match g.log_format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// The topo configuration the global flags describe.
pub fn topo_config(g: &GlobalArgs) -> TopoConfig {
    TopoConfig {
        endpoints: g.topo_server.clone(),
        root: g.topo_root.clone(),
        ca_file: g.topo_cacert.clone(),
        cert_file: g.topo_cert.clone(),
        key_file: g.topo_key.clone(),
        user: g.topo_user.clone(),
        password_file: g.topo_password_file.clone(),
        ..TopoConfig::default()
    }
}

/// Admin commands give up on an unreachable etcd after this long (agents retry forever).
const ADMIN_CONNECT_DEADLINE: Duration = Duration::from_secs(10);

async fn connect_admin(g: &GlobalArgs) -> anyhow::Result<Topo> {
    let cfg = topo_config(g);
    Topo::connect(&cfg, Some(ADMIN_CONNECT_DEADLINE))
        .await
        .map_err(|e| match e {
            // Already one clear line naming the endpoint and the flag to fix.
            TopoError::Config(_) | TopoError::Tls(_) | TopoError::Auth(_) => anyhow::Error::new(e),
            e => anyhow::anyhow!("cannot reach etcd at {}: {e}", cfg.endpoints.join(",")),
        })
}

/// Runs one parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let g = cli.global;
    match cli.command {
        Command::Tablet(a) => crate::tablet::run(topo_config(&g), config::agent_config(&a)?).await,
        Command::Coordinator(a) => {
            let cfg = config::coordinator_config(&a)?;
            crate::coordinator::run::run(topo_config(&g), cfg).await
        }
        Command::GetTablets(a) => tablets::get_tablets(&connect_admin(&g).await?, a).await,
        Command::GetShard(a) => tablets::get_shard(&connect_admin(&g).await?, a).await,
        Command::InitShardPrimary(a) => {
            tablets::init_shard_primary(&connect_admin(&g).await?, a).await
        }
        Command::Backup(a) => backups::backup(&connect_admin(&g).await?, a).await,
        Command::BackupShard(a) => backups::backup_shard(&connect_admin(&g).await?, a).await,
        Command::ListBackups(a) => backups::list_backups(&connect_admin(&g).await?, a).await,
        Command::RemoveBackup(a) => backups::remove_backup(&connect_admin(&g).await?, a).await,
        Command::RestoreFromBackup(a) => backups::restore(&connect_admin(&g).await?, a).await,
        Command::Jobs(a) => jobs::list(&connect_admin(&g).await?, a).await,
        Command::Schedule(c) => schedule::run(&g, c).await,
        Command::Archive(c) => archive::run(&g, c).await,
        Command::Topo(c) => topo_snapshot::run(&g, c).await,
        Command::Verify(a) => verify::verify(&g, a).await,
        Command::Status(a) => status::status(&connect_admin(&g).await?, a).await,
        Command::Drill(a) => drill::drill(&g, a).await,
        Command::Completions(a) => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(a.shell, &mut cmd, "cairn", &mut std::io::stdout());
            Ok(())
        }
    }
}
