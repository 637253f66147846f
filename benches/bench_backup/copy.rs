//! The uncompressed copy against a durable copy of the same bytes: builtin
//! backup with compression `none` into a `FileStorage` against `cat FILES > out;
//! sync out` (both write every byte once and make it durable). Goal: at least
//! 80% of the baseline's throughput. Besides the default (BLAKE3, reads ahead),
//! the same backup hashing with sha256 and reading inline (how cairn copied
//! before) and BLAKE3 inline, so the figures show what each change gained. All
//! variants and the baseline run in every round, in rotating order, files warm.

use std::path::Path;

use cairn::backup::manifest::HashAlgorithm;
use cairn::backup::pipeline::{Compression, CopyOptions, SourceFile};
use cairn::backup::storage::FileStorage;

use super::measure::{our_backup_with, settle, shell, Timed};
use super::report::{Goal, Row};
use crate::common::quote;

/// The cairn variants: label, hash, read ahead.
const VARIANTS: [(&str, HashAlgorithm, bool); 3] = [
    ("blake3, read ahead (default)", HashAlgorithm::Blake3, true),
    ("blake3, read inline", HashAlgorithm::Blake3, false),
    ("sha256, read inline (before)", HashAlgorithm::Sha256, false),
];

/// The pass: `reps` rounds, each running the baseline and every variant once
/// (warm: `cat` reads every file first), the order rotating by one each round.
pub async fn none_pass(
    work: &Path,
    files: &[SourceFile],
    cat: &str,
    cat_args: &str,
    concurrency: usize,
    reps: usize,
    name: &mut dyn FnMut() -> String,
) -> anyhow::Result<Vec<Row>> {
    let bytes: u64 = files.iter().map(|f| f.size).sum();
    let out = work.join("copy.out");
    let copy = format!("cat {cat_args} > {0}; sync {0}", quote(&out));
    let store_dir = work.join("store-none");
    let mut base: Vec<Timed> = vec![];
    let mut ours: Vec<Vec<Timed>> = vec![vec![]; VARIANTS.len()];
    let sides = VARIANTS.len() + 1;
    for rep in 0..reps {
        eprintln!("builtin none vs cat > file; sync, run {}/{reps}…", rep + 1);
        for k in 0..sides {
            let side = (k + rep) % sides;
            shell("warm-up read", cat)?;
            if side == VARIANTS.len() {
                base.push(shell("cat > file; sync", &copy)?);
                std::fs::remove_file(&out)?;
            } else {
                let (_, hash, read_ahead) = VARIANTS[side];
                let opts = CopyOptions {
                    compression: Compression::None,
                    concurrency,
                    hash,
                    read_ahead,
                    ..CopyOptions::default()
                };
                let store = FileStorage::new(&store_dir);
                let (t, m) = our_backup_with(Some(&store), &name(), files, &opts).await?;
                if m.total_size != bytes || m.stored_size != bytes {
                    anyhow::bail!(
                        "backup stored {} of {} bytes, expected {bytes}",
                        m.stored_size,
                        m.total_size
                    );
                }
                ours[side].push(t);
                std::fs::remove_dir_all(&store_dir)?;
            }
            settle();
        }
    }
    Ok(VARIANTS
        .iter()
        .zip(ours)
        .enumerate()
        .map(|(i, ((label, _, _), ours))| Row {
            what: if i == 0 {
                "builtin none vs cat FILES > file; sync (warm)".into()
            } else {
                format!("  (diag) none, {label}")
            },
            ours,
            base: base.clone(),
            bytes,
            goal: (i == 0).then_some(Goal::MinThroughput(0.8)),
            note: format!(
                "ours: {label}, concurrency {concurrency}, fsync per file, MANIFEST; \
                 both write and make durable every byte once"
            ),
        })
        .collect())
}
