//! Table tests of the key parsing, the identity decision, and round trips
//! through the encryptor, the decryptor and the async snapshot adapter.

use age::secrecy::ExposeSecret;
use tokio::io::AsyncReadExt;

use super::*;

/// A fresh key pair: (identity file text, public key).
fn keypair() -> (String, String) {
    let id = x25519::Identity::generate();
    let text = format!(
        "# created: now\n# public key: {}\n{}\n",
        id.to_public(),
        id.to_string().expose_secret()
    );
    (text, id.to_public().to_string())
}

#[test]
fn recipients_are_validated() {
    let (_, a) = keypair();
    let (_, b) = keypair();
    let ok = Recipients::new(&[a.clone(), b.clone(), a.clone()]).unwrap();
    assert_eq!(ok.names(), &[a.clone(), b.clone()], "duplicates dropped");
    for (bad, want) in [
        ("", "is not an age X25519 public key"),
        ("age1xyz", "is not an age X25519 public key"),
        ("ssh-ed25519 AAAA", "is not an age X25519 public key"),
        (
            "AGE-SECRET-KEY-1QQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQ",
            "is not an age X25519 public key",
        ),
    ] {
        let e = Recipients::new(&[bad.to_string()]).unwrap_err();
        assert!(e.contains(want), "{bad:?}: {e}");
    }
    assert_eq!(Recipients::new(&[]).unwrap_err(), "no recipient given");
    // A typo in one character breaks the Bech32 checksum.
    let mut typo = a.clone();
    let last = typo.pop().unwrap();
    typo.push(if last == 'q' { 'p' } else { 'q' });
    assert!(Recipients::new(&[typo]).is_err());
}

#[test]
fn recipients_files_allow_comments_and_name_the_bad_line() {
    let (_, a) = keypair();
    let (_, b) = keypair();
    let text = format!("# team keys\n\n{a}\n  {b}  \n");
    assert_eq!(parse_recipients_file(&text).unwrap(), vec![a.clone(), b]);
    let e = parse_recipients_file(&format!("{a}\nage1nope\n")).unwrap_err();
    assert!(e.starts_with("line 2: "), "{e}");
    assert!(parse_recipients_file("# nothing\n").unwrap().is_empty());
}

#[test]
fn identity_files_parse_and_never_quote_a_secret() {
    let (text, public) = keypair();
    let ids = Identities::parse(&text, "key.txt").unwrap();
    assert_eq!(ids.public_keys(), std::slice::from_ref(&public));
    assert!(!format!("{ids:?}").contains("AGE-SECRET-KEY"));
    assert!(format!("{ids:?}").contains(&public));
    let e = Identities::parse("", "k").unwrap_err();
    assert!(e.contains("no identity"), "{e}");
    let secretish = "AGE-SECRET-KEY-1SECRETSECRETSECRET";
    let e = Identities::parse(&format!("# x\n{secretish}\n"), "k").unwrap_err();
    assert!(e.starts_with("line 2 is not an age X25519 identity"), "{e}");
    assert!(!e.contains("SECRETSECRET"), "{e}");
    // A public key is not an identity.
    assert!(Identities::parse(&public, "k").is_err());
}

/// (encryption, recipients, identities, Ok or a piece of the error)
type Case<'a> = (
    Option<&'a str>,
    Vec<String>,
    Option<&'a Identities>,
    Result<(), &'a str>,
);

#[test]
fn which_identities_open_which_backup() {
    let (ta, a) = keypair();
    let (tb, b) = keypair();
    let (tc, _) = keypair();
    let ida = Identities::parse(&ta, "a.key").unwrap();
    let idb = Identities::parse(&tb, "b.key").unwrap();
    let idc = Identities::parse(&tc, "c.key").unwrap();
    let both = vec![a.clone(), b.clone()];
    // (encryption, recipients, identities, Ok or a piece of the error)
    let cases: Vec<Case> = vec![
        (None, vec![], None, Ok(())),
        (None, vec![], Some(&ida), Ok(())),
        (Some("age"), both.clone(), Some(&ida), Ok(())),
        (Some("age"), both.clone(), Some(&idb), Ok(())),
        (
            Some("age"),
            vec![a.clone()],
            Some(&idb),
            Err("none of the identities in --backup-encryption-identity-file b.key"),
        ),
        (Some("age"), both.clone(), Some(&idc), Err("is one of them")),
        (
            Some("age"),
            both.clone(),
            None,
            Err("needs --backup-encryption-identity-file"),
        ),
        (Some("age"), vec![], Some(&idc), Ok(())),
        (
            Some("age"),
            vec![],
            None,
            Err("recipients not listed in its MANIFEST"),
        ),
        (Some("gpg"), vec![], Some(&ida), Err("cannot decrypt")),
    ];
    for (enc, recips, ids, want) in cases {
        let got = check_identities("B", enc, &recips, ids);
        match (&got, want) {
            (Ok(()), Ok(())) => {}
            (Err(e), Err(piece)) => {
                assert!(e.contains(piece), "{enc:?} {recips:?}: {e}");
                assert!(e.contains("backup B"), "{e}");
                for r in &recips {
                    assert!(
                        e.contains(r.as_str()),
                        "the error names the recipients: {e}"
                    );
                }
            }
            _ => panic!("{enc:?} {recips:?} {:?}: {got:?}", ids.map(|i| i.source())),
        }
    }
}

#[test]
fn round_trip_with_either_of_two_recipients() {
    let (ta, a) = keypair();
    let (tb, b) = keypair();
    let (tc, _) = keypair();
    let r = Recipients::new(&[a, b]).unwrap();
    let plain: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let mut w = r.encrypt(Vec::new()).unwrap();
    w.write_all(&plain).unwrap();
    let sealed = w.finish().unwrap();
    assert!(sealed.starts_with(AGE_MAGIC));
    for t in [&ta, &tb] {
        let ids = Identities::parse(t, "k").unwrap();
        assert_eq!(decrypt_all(&ids, &sealed).unwrap(), plain);
    }
    let wrong = Identities::parse(&tc, "c.key").unwrap();
    let e = decrypt_all(&wrong, &sealed).unwrap_err();
    assert!(e.contains("none of the identities in c.key"), "{e}");
    // A flipped byte in the payload fails authentication.
    let mut bad = sealed.clone();
    let n = bad.len();
    bad[n - 100] ^= 1;
    let ida = Identities::parse(&ta, "k").unwrap();
    assert!(decrypt_all(&ida, &bad).is_err());
    // A truncated file (an encryptor never finished) does not decrypt.
    assert!(decrypt_all(&ida, &sealed[..sealed.len() - 20]).is_err());
}

#[tokio::test]
async fn encrypting_reader_streams_an_age_file_and_reports_it() {
    let (ta, a) = keypair();
    let r = Recipients::new(&[a]).unwrap();
    let plain: Vec<u8> = (0..1_000_000u32).map(|i| (i * 7 % 253) as u8).collect();
    let mut reader = EncryptingReader::new(&plain[..], &r).unwrap();
    let sealed_info = reader.sealed();
    let mut out = Vec::new();
    reader.read_to_end(&mut out).await.unwrap();
    let ids = Identities::parse(&ta, "k").unwrap();
    assert_eq!(decrypt_all(&ids, &out).unwrap(), plain);
    let info = sealed_info.lock().unwrap().clone().unwrap();
    assert_eq!(info.size_bytes, out.len() as u64);
    assert_eq!(info.sha256, hex::encode(Sha256::digest(&out)));

    // A failing source fails the reader, and it stays failed.
    struct Failing;
    impl AsyncRead for Failing {
        fn poll_read(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            _: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            Poll::Ready(Err(io::Error::other("etcd went away")))
        }
    }
    let mut reader = EncryptingReader::new(Failing, &r).unwrap();
    let mut out = Vec::new();
    assert!(reader.read_to_end(&mut out).await.is_err());
    let mut more = [0u8; 16];
    assert!(reader.read(&mut more).await.is_err());
}
