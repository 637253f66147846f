//! The storage and encryption flags, shared by the tablet, the coordinator and the
//! admin commands that read or write backup storage. Parsed by clap only; turned
//! into a `StorageConfig` and encryption settings by `cli::config`.

use std::path::PathBuf;

use clap::{Args, ValueEnum};

use crate::backup::storage::ServerSideEncryption;

/// Backup storage backends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StorageArg {
    File,
    S3,
}

/// Where backups live (shared by tablets, coordinator and the backup admin commands).
#[derive(Debug, Clone, Args)]
pub struct StorageArgs {
    /// Backup storage backend
    #[arg(long, value_enum, default_value_t = StorageArg::File, env = "CAIRN_BACKUP_STORAGE_IMPLEMENTATION")]
    pub backup_storage_implementation: StorageArg,
    /// Root directory of the file backup storage
    #[arg(long, env = "CAIRN_FILE_BACKUP_STORAGE_ROOT")]
    pub file_backup_storage_root: Option<PathBuf>,
    /// S3 bucket of the s3 backup storage (credentials: the standard AWS environment
    /// variables and credentials file)
    #[arg(long, env = "CAIRN_S3_BACKUP_STORAGE_BUCKET")]
    pub s3_backup_storage_bucket: Option<String>,
    /// Key prefix of every object in the bucket
    #[arg(long, env = "CAIRN_S3_BACKUP_STORAGE_ROOT")]
    pub s3_backup_storage_root: Option<String>,
    /// AWS region of the bucket
    #[arg(long, env = "CAIRN_S3_BACKUP_AWS_REGION", default_value = "us-east-1")]
    pub s3_backup_aws_region: String,
    /// URL of an S3-compatible server (MinIO, Ceph, SeaweedFS, R2, …)
    #[arg(long, env = "CAIRN_S3_BACKUP_AWS_ENDPOINT")]
    pub s3_backup_aws_endpoint: Option<String>,
    /// Path-style requests (ENDPOINT/BUCKET/KEY) instead of virtual-hosted (BUCKET.HOST/KEY)
    #[arg(long, env = "CAIRN_S3_BACKUP_FORCE_PATH_STYLE", num_args = 0..=1, require_equals = true, default_missing_value = "true", default_value = "false")]
    pub s3_backup_force_path_style: bool,
    /// Retries of each S3 request (each part on its own; -1: the default, 10)
    #[arg(long, env = "CAIRN_S3_BACKUP_AWS_RETRIES", allow_negative_numbers = true, value_parser = clap::value_parser!(i64).range(-1..=1000))]
    pub s3_backup_aws_retries: Option<i64>,
    /// Server-side encryption: aws:kms or AES256
    #[arg(long, env = "CAIRN_S3_BACKUP_SERVER_SIDE_ENCRYPTION", value_parser = parse_sse)]
    pub s3_backup_server_side_encryption: Option<ServerSideEncryption>,
}

fn parse_sse(s: &str) -> Result<ServerSideEncryption, String> {
    ServerSideEncryption::parse(s)
}

/// An age X25519 recipient (`age1…`), checked at parse time.
fn parse_age_recipient(s: &str) -> Result<String, String> {
    crate::backup::encryption::parse_recipient(s)?;
    Ok(s.trim().to_string())
}

/// Encryption of what is written to backup storage (tablets' backups, the
/// coordinator's etcd snapshots): age, to these recipients.
#[derive(Debug, Clone, Args)]
pub struct EncryptionArgs {
    /// Encrypt backups with age to this X25519 recipient (repeatable: any one
    /// recipient's identity decrypts)
    #[arg(long, value_name = "AGE1…", value_parser = parse_age_recipient)]
    pub backup_encryption_recipient: Vec<String>,
    /// File listing age recipients, one `age1…` a line (`#` comments allowed)
    #[arg(long, value_name = "FILE")]
    pub backup_encryption_recipients_file: Option<PathBuf>,
}
