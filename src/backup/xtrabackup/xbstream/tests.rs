use std::process::{Command, Stdio};

use super::*;

/// One payload chunk and its end-of-file chunk, as mariabackup writes them.
fn file(path: &[u8], data: &[u8]) -> Vec<u8> {
    let mut v = chunk(b'P', path);
    v.extend_from_slice(&(data.len() as u64).to_le_bytes());
    v.extend_from_slice(&0u64.to_le_bytes());
    v.extend_from_slice(&crc32(data).to_le_bytes());
    v.extend_from_slice(data);
    v.extend(chunk(b'E', path));
    v
}

fn chunk(kind: u8, path: &[u8]) -> Vec<u8> {
    let mut v = MAGIC.to_vec();
    v.push(0);
    v.push(kind);
    v.extend_from_slice(&(path.len() as u32).to_le_bytes());
    v.extend_from_slice(path);
    v
}

/// CRC-32 (ISO 3309), the checksum mbstream verifies.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for b in data {
        crc ^= u32::from(*b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// Feeds `stream` through a guard in pieces of `step` bytes; what reached the inner
/// writer and the error, if any.
fn feed(stream: &[u8], step: usize) -> (Vec<u8>, Option<String>) {
    let mut g = XbstreamGuard::new(Vec::new());
    for piece in stream.chunks(step) {
        if let Err(e) = g.write_all(piece) {
            return (g.inner, Some(e.to_string()));
        }
    }
    let out_len = g.inner.len();
    match g.finish() {
        Ok(out) => (out, None),
        Err(e) => (vec![0; out_len], Some(e.to_string())),
    }
}

#[test]
fn good_streams_pass_unchanged_in_any_pieces() {
    let mut s = file(b"ibdata1", b"some innodb pages");
    s.extend(file(b"mysql/user.frm", b""));
    s.extend(file(b"app/t.ibd", &[7u8; 70_000]));
    s.extend(file(
        b"xtrabackup_checkpoints",
        b"backup_type = full-backuped\n",
    ));
    for step in [1, 3, 14, 15, 64, 4096, s.len()] {
        let (out, err) = feed(&s, step);
        assert_eq!(err, None, "step {step}");
        assert_eq!(out, s, "step {step}");
    }
}

#[test]
fn escaping_and_malformed_chunks_are_refused_before_forwarding() {
    let ok = file(b"ibdata1", b"data");
    let mut bad_magic = file(b"x", b"y");
    bad_magic[0] = b'Y';
    let mut unknown_type = file(b"x", b"y");
    unknown_type[MAGIC.len() + 1] = b'S';
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("dotdot", file(b"../escape", b"x"), "contains .."),
        ("inner dotdot", file(b"a/../../b", b"x"), "contains .."),
        ("absolute", file(b"/etc/cron.d/x", b"x"), "absolute path"),
        ("dot", file(b"./ibdata1", b"x"), "contains ."),
        ("empty segment", file(b"a//b", b"x"), "empty path segment"),
        ("nul", file(b"a\0b", b"x"), "contains NUL"),
        ("not utf-8", file(b"a\xffb", b"x"), "is not UTF-8"),
        ("empty path", file(b"", b"x"), "a path of 0 bytes"),
        ("magic", bad_magic, "does not start with \"XBSTCK01\""),
        ("type", unknown_type, "unknown type 0x53"),
    ];
    for (what, bad, want) in cases {
        let mut s = ok.clone();
        s.extend_from_slice(&bad);
        for step in [1, 7, s.len()] {
            let (out, err) = feed(&s, step);
            let err = err.unwrap_or_else(|| panic!("{what}: accepted"));
            assert!(err.contains("refusing the xbstream"), "{what}: {err}");
            assert!(err.contains(want), "{what}: {err}");
            // Nothing of the bad chunk's header went through: only the good file.
            assert_eq!(&out[..], &ok[..], "{what} step {step}");
        }
    }
}

#[test]
fn a_stream_cut_inside_a_chunk_is_refused() {
    let s = file(b"ibdata1", b"0123456789");
    for cut in [5, 20, 30, s.len() - 3] {
        let (_, err) = feed(&s[..cut], 4);
        let err = err.unwrap_or_else(|| panic!("cut at {cut}: accepted"));
        assert!(err.contains("ends inside a chunk"), "{err}");
    }
    assert_eq!(feed(&[], 1).1, None);
}

#[test]
fn symlinks_in_the_staging_tree_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir_all(dir.path().join("a/b")).unwrap();
    fs::write(dir.path().join("a/b/f"), b"x").unwrap();
    check_no_symlinks(dir.path()).unwrap();
    std::os::unix::fs::symlink("/etc", dir.path().join("a/b/out")).unwrap();
    let err = format!("{:#}", check_no_symlinks(dir.path()).unwrap_err());
    assert!(err.contains("a/b/out is a symlink (to /etc)"), "{err}");
    check_no_symlinks(&dir.path().join("missing")).unwrap();
}

/// The real tool: a stream `mbstream -c` writes passes the guard unchanged (so the
/// format above is the tool's), and a crafted one never reaches `mbstream -x`.
#[test]
fn real_mbstream_streams_pass_and_crafted_ones_do_not_reach_it() {
    let Some(mbstream) = crate::mysql::flavor::find_on_path("mbstream") else {
        eprintln!("mbstream not installed; skipping");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    fs::create_dir_all(src.join("app")).unwrap();
    fs::write(src.join("ibdata1"), vec![1u8; 100_000]).unwrap();
    fs::write(src.join("app/t.ibd"), b"table").unwrap();
    let out = Command::new(&mbstream)
        .args(["-c", "ibdata1", "app/t.ibd"])
        .current_dir(&src)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let (passed, err) = feed(&out.stdout, 1000);
    assert_eq!(err, None);
    assert_eq!(passed, out.stdout);

    // The crafted stream goes through the guard into a real unpacker.
    let staging = dir.path().join("staging");
    fs::create_dir_all(&staging).unwrap();
    let mut crafted = file(b"ok", b"fine");
    crafted.extend(file(b"../escaped", b"outside"));
    let mut child = Command::new(&mbstream)
        .arg("-x")
        .arg("-C")
        .arg(&staging)
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    let stdin = child.stdin.take().unwrap();
    let mut g = XbstreamGuard::new(stdin);
    let err = g.write_all(&crafted).unwrap_err().to_string();
    drop(g);
    let _ = child.wait();
    assert!(err.contains("contains .."), "{err}");
    assert!(!dir.path().join("escaped").exists());
    assert_eq!(fs::read(staging.join("ok")).unwrap(), b"fine");
}
