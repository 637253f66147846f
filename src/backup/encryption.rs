//! Encryption at rest with age (<https://age-encryption.org/v1>): every stored
//! object of an encrypted backup (and every etcd snapshot under `_topo/`) is a
//! standard age file with X25519 recipients, so `age -d -i KEY FILE` opens it
//! without cairn. The MANIFEST stays plaintext and names the recipients.
//!
//! Owns: [`Recipients`] (`--backup-encryption-recipient`,
//! `--backup-encryption-recipients-file`) and [`Identities`]
//! (`--backup-encryption-identity-file`), parsed from text (the CLI reads the
//! files); the one decision whether a set of identities can open a backup
//! ([`check_identities`], pure); the streaming encryptor and decryptor the
//! pipeline wraps around storage; [`EncryptingReader`], the async adapter the
//! etcd snapshots are stored through. Secrets are never printed: identities show
//! as their public keys.
//!
//! May call: the `age` crate; nothing else of the crate.

use std::fmt;
use std::io::{self, BufRead, Read, Write};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use age::x25519;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, ReadBuf};

/// The value of the MANIFEST's `Encryption` for age files.
pub const AGE: &str = "age";

/// The first bytes of every age file (the header's version line).
pub const AGE_MAGIC: &[u8] = b"age-encryption.org/v1\n";

/// Parses one X25519 recipient (`age1…`).
pub fn parse_recipient(s: &str) -> Result<x25519::Recipient, String> {
    s.trim()
        .parse::<x25519::Recipient>()
        .map_err(|why| format!("{s:?} is not an age X25519 public key (age1…): {why}"))
}

/// The non-empty, non-comment lines of a recipients or identity file, with their
/// line numbers (from 1). `#` starts a comment line, as in age's own files.
fn key_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
}

/// The recipients a recipients file lists, one `age1…` key a line (`#` comments
/// and blank lines allowed). Pure.
pub fn parse_recipients_file(text: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for (n, line) in key_lines(text) {
        parse_recipient(line).map_err(|why| format!("line {n}: {why}"))?;
        out.push(line.to_string());
    }
    Ok(out)
}

/// Who backups are encrypted to: at least one X25519 recipient. Encrypting to
/// several lets any one of their identities decrypt (key rotation, escrow).
#[derive(Clone)]
pub struct Recipients {
    /// The parsed keys, in the order given.
    keys: Vec<x25519::Recipient>,
    /// The same keys as written (`age1…`), for the MANIFEST.
    names: Vec<String>,
}

impl fmt::Debug for Recipients {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Recipients").field(&self.names).finish()
    }
}

impl PartialEq for Recipients {
    fn eq(&self, other: &Self) -> bool {
        self.names == other.names
    }
}

impl Recipients {
    /// Validates `keys` (duplicates dropped) and proves they can encrypt: an
    /// empty list or a key that is not an X25519 recipient is an error, so
    /// configured-but-unusable encryption is found before anything is stored.
    pub fn new(keys: &[String]) -> Result<Self, String> {
        let mut names: Vec<String> = Vec::new();
        let mut parsed = Vec::new();
        for k in keys {
            let k = k.trim();
            let r = parse_recipient(k)?;
            if !names.iter().any(|n| n == k) {
                names.push(k.to_string());
                parsed.push(r);
            }
        }
        if parsed.is_empty() {
            return Err("no recipient given".into());
        }
        let me = Recipients {
            keys: parsed,
            names,
        };
        // A trial run: an encryptor that cannot be built here never will be.
        let mut probe = me.encrypt(Vec::new()).map_err(|e| e.to_string())?;
        probe.write_all(b"probe").map_err(|e| e.to_string())?;
        probe.finish().map_err(|e| e.to_string())?;
        Ok(me)
    }

    /// The public keys, as written (`age1…`): the MANIFEST's `EncryptionRecipients`.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// A streaming encryptor writing one age file into `out`; its `finish()`
    /// must be called, or the file is truncated (and fails to decrypt).
    pub fn encrypt<W: Write>(&self, out: W) -> io::Result<age::stream::StreamWriter<W>> {
        let encryptor =
            age::Encryptor::with_recipients(self.keys.iter().map(|r| r as &dyn age::Recipient))
                .map_err(|e| io::Error::other(format!("setting up age encryption: {e}")))?;
        encryptor.wrap_output(out)
    }
}

/// Keys that decrypt backups: the X25519 identities (`AGE-SECRET-KEY-1…`) of an
/// identity file. Shown only as their public keys.
#[derive(Clone)]
pub struct Identities {
    /// The secret keys.
    ids: Vec<x25519::Identity>,
    /// Their public keys (`age1…`), in the same order.
    public: Vec<String>,
    /// Where they came from (the file name), for messages.
    source: String,
}

impl fmt::Debug for Identities {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identities")
            .field("public", &self.public)
            .field("source", &self.source)
            .finish()
    }
}

impl Identities {
    /// Parses an identity file's text (one `AGE-SECRET-KEY-1…` a line, `#`
    /// comments and blank lines allowed, as `age-keygen` writes it). At least
    /// one identity is required. Errors never quote a line (it may be a secret).
    pub fn parse(text: &str, source: &str) -> Result<Self, String> {
        let mut ids = Vec::new();
        let mut public = Vec::new();
        for (n, line) in key_lines(text) {
            let id = line.parse::<x25519::Identity>().map_err(|why| {
                format!("line {n} is not an age X25519 identity (AGE-SECRET-KEY-1…): {why}")
            })?;
            let p = id.to_public().to_string();
            if !public.contains(&p) {
                public.push(p);
                ids.push(id);
            }
        }
        if ids.is_empty() {
            return Err("holds no identity (AGE-SECRET-KEY-1…)".into());
        }
        Ok(Identities {
            ids,
            public,
            source: source.to_string(),
        })
    }

    /// The public keys of these identities (`age1…`).
    pub fn public_keys(&self) -> &[String] {
        &self.public
    }

    /// Where they came from.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Reads an age file's header from `input` and unwraps its file key with one
    /// of these identities; the returned reader yields the plaintext and fails a
    /// read whose chunk does not authenticate.
    pub fn decrypt<R: BufRead>(&self, input: R) -> Result<age::stream::StreamReader<R>, String> {
        let d = age::Decryptor::new_buffered(input).map_err(|e| format!("not an age file: {e}"))?;
        d.decrypt(self.ids.iter().map(|i| i as &dyn age::Identity))
            .map_err(|e| match e {
                age::DecryptError::NoMatchingKeys => format!(
                    "none of the identities in {} ({}) is a recipient of it",
                    self.source,
                    self.public.join(", ")
                ),
                e => e.to_string(),
            })
    }
}

/// Whether `ids` may open a backup whose MANIFEST says `encryption` and
/// `recipients`, decided from the MANIFEST alone (no data read): a plaintext
/// backup needs nothing; an age one needs identities, one of which is among its
/// recipients (when the MANIFEST lists them); any other scheme is refused. The
/// error names the recipients needed. Pure.
pub fn check_identities(
    backup: &str,
    encryption: Option<&str>,
    recipients: &[String],
    ids: Option<&Identities>,
) -> Result<(), String> {
    let needed = || {
        if recipients.is_empty() {
            "recipients not listed in its MANIFEST".to_string()
        } else {
            recipients.join(", ")
        }
    };
    match (encryption, ids) {
        (None, _) => Ok(()),
        (Some(e), _) if e != AGE => Err(format!(
            "backup {backup} is encrypted with {e:?}, which this cairn cannot decrypt (only {AGE:?})"
        )),
        (Some(_), None) => Err(format!(
            "backup {backup} is encrypted with age to {}: restoring it needs \
             --backup-encryption-identity-file with the identity of one of them",
            needed()
        )),
        (Some(_), Some(ids)) => {
            if recipients.is_empty() || ids.public.iter().any(|p| recipients.contains(p)) {
                Ok(())
            } else {
                Err(format!(
                    "backup {backup} is encrypted with age to {}; none of the identities in \
                     --backup-encryption-identity-file {} ({}) is one of them",
                    needed(),
                    ids.source,
                    ids.public.join(", ")
                ))
            }
        }
    }
}

/// A `Write` into a buffer shared with whoever drains it (the age encryptor
/// owns its writer until `finish`).
#[derive(Clone, Default)]
struct SharedBuf(Arc<Mutex<Vec<u8>>>);

impl SharedBuf {
    fn take(&self) -> Vec<u8> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

impl Write for SharedBuf {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// What an [`EncryptingReader`] handed out, once it ended: bytes and their sha256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    /// Bytes of the age file.
    pub size_bytes: u64,
    /// Hex sha256 of them.
    pub sha256: String,
}

/// An `AsyncRead` that yields the age encryption of what `inner` yields: the
/// stream stored for an etcd snapshot. An error of `inner` ends it with that
/// error (never a well-formed file); at the end, [`EncryptingReader::sealed`]
/// tells what was handed out.
pub struct EncryptingReader<R> {
    /// The plaintext.
    inner: R,
    /// The encryptor, until `inner` ends.
    writer: Option<age::stream::StreamWriter<SharedBuf>>,
    /// Where the encryptor writes.
    buf: SharedBuf,
    /// Ciphertext waiting to be handed out, and how much of it was.
    pending: Vec<u8>,
    pos: usize,
    /// Hash and count of the bytes handed out.
    hasher: Sha256,
    count: u64,
    /// Set at the end: what was handed out.
    done: Arc<Mutex<Option<Sealed>>>,
    /// Set once `inner` failed: every later read fails too.
    failed: bool,
}

impl<R> EncryptingReader<R> {
    /// Wraps `inner`; the header is produced at once.
    pub fn new(inner: R, recipients: &Recipients) -> io::Result<Self> {
        let buf = SharedBuf::default();
        let writer = recipients.encrypt(buf.clone())?;
        Ok(Self {
            inner,
            writer: Some(writer),
            buf,
            pending: Vec::new(),
            pos: 0,
            hasher: Sha256::new(),
            count: 0,
            done: Arc::new(Mutex::new(None)),
            failed: false,
        })
    }

    /// Filled in once the reader returned its end: size and sha256 of the age
    /// file it produced.
    pub fn sealed(&self) -> Arc<Mutex<Option<Sealed>>> {
        self.done.clone()
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for EncryptingReader<R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        if me.failed {
            return Poll::Ready(Err(io::Error::other("the stream being encrypted failed")));
        }
        loop {
            if me.pos < me.pending.len() {
                let n = (me.pending.len() - me.pos).min(out.remaining());
                let chunk = &me.pending[me.pos..me.pos + n];
                me.hasher.update(chunk);
                me.count += n as u64;
                out.put_slice(chunk);
                me.pos += n;
                return Poll::Ready(Ok(()));
            }
            me.pending = me.buf.take();
            me.pos = 0;
            if !me.pending.is_empty() {
                continue;
            }
            let Some(writer) = me.writer.as_mut() else {
                // Ended: report what was handed out, once.
                let mut done = me.done.lock().unwrap_or_else(|p| p.into_inner());
                if done.is_none() {
                    *done = Some(Sealed {
                        size_bytes: me.count,
                        sha256: hex::encode(std::mem::take(&mut me.hasher).finalize()),
                    });
                }
                return Poll::Ready(Ok(()));
            };
            let mut plain = [0u8; 64 << 10];
            let mut rb = ReadBuf::new(&mut plain);
            match Pin::new(&mut me.inner).poll_read(cx, &mut rb) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => {
                    me.writer = None;
                    me.failed = true;
                    return Poll::Ready(Err(e));
                }
                Poll::Ready(Ok(())) if rb.filled().is_empty() => {
                    if let Some(w) = me.writer.take() {
                        w.finish()?;
                    }
                }
                Poll::Ready(Ok(())) => writer.write_all(rb.filled())?,
            }
        }
    }
}

/// Reads the whole of `input` as an age file with `ids` (tests and tools).
pub fn decrypt_all(ids: &Identities, input: &[u8]) -> Result<Vec<u8>, String> {
    let mut r = ids.decrypt(input)?;
    let mut out = Vec::new();
    r.read_to_end(&mut out).map_err(|e| e.to_string())?;
    Ok(out)
}

#[cfg(test)]
mod tests;
