//! Throwaway PKI for TLS tests, made with the `openssl` command line: a CA, an
//! etcd server certificate for `127.0.0.1`/`localhost` signed by it, a client
//! certificate signed by it, and a second, untrusted CA with a client
//! certificate of its own (a wrongly signed client). EC P-256 keys, valid for a
//! day; everything lives in a temporary directory removed on drop.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};

/// Paths of the generated PEM files (all in one temporary directory).
#[derive(Debug)]
pub struct TestCerts {
    /// Holds the files; removed on drop.
    dir: tempfile::TempDir,
}

/// One certificate and its private key.
#[derive(Debug, Clone)]
pub struct CertPair {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TestCerts {
    /// Generates the CA, the server and client certificates, and the untrusted
    /// CA with its client certificate.
    pub fn generate() -> anyhow::Result<TestCerts> {
        let dir = tempfile::Builder::new()
            .prefix("cairn-certs-")
            .tempdir()
            .context("cannot create a temporary directory for certificates")?;
        let certs = TestCerts { dir };
        let d = certs.dir.path();
        make_ca(d, "ca", "cairn test CA")?;
        make_ca(d, "other-ca", "cairn untrusted test CA")?;
        let server_ext = "basicConstraints=critical,CA:FALSE\n\
                          keyUsage=critical,digitalSignature,keyEncipherment\n\
                          extendedKeyUsage=serverAuth,clientAuth\n\
                          subjectAltName=IP:127.0.0.1,DNS:localhost\n";
        let client_ext = "basicConstraints=critical,CA:FALSE\n\
                          keyUsage=critical,digitalSignature,keyEncipherment\n\
                          extendedKeyUsage=clientAuth\n";
        make_signed(d, "ca", "server", "localhost", server_ext)?;
        make_signed(d, "ca", "client", "cairn-client", client_ext)?;
        make_signed(d, "other-ca", "rogue-client", "cairn-client", client_ext)?;
        Ok(certs)
    }

    /// The CA that signed the server and client certificates.
    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// A CA that signed nothing etcd trusts.
    pub fn other_ca(&self) -> PathBuf {
        self.dir.path().join("other-ca.pem")
    }

    /// etcd's certificate (SAN 127.0.0.1, localhost).
    pub fn server(&self) -> CertPair {
        self.pair("server")
    }

    /// A client certificate signed by [`TestCerts::ca`].
    pub fn client(&self) -> CertPair {
        self.pair("client")
    }

    /// A client certificate signed by [`TestCerts::other_ca`], which etcd rejects.
    pub fn rogue_client(&self) -> CertPair {
        self.pair("rogue-client")
    }

    fn pair(&self, name: &str) -> CertPair {
        CertPair {
            cert: self.dir.path().join(format!("{name}.pem")),
            key: self.dir.path().join(format!("{name}-key.pem")),
        }
    }
}

/// Runs `openssl ARGS…` in `dir`, failing with its stderr.
fn openssl(dir: &Path, args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .context("cannot run `openssl` (is it installed?)")?;
    if !out.status.success() {
        bail!(
            "openssl {} failed: {}",
            args.first().unwrap_or(&""),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// A self-signed CA: `NAME.pem`, `NAME-key.pem`.
fn make_ca(dir: &Path, name: &str, cn: &str) -> anyhow::Result<()> {
    let key = format!("{name}-key.pem");
    let cert = format!("{name}.pem");
    let subj = format!("/CN={cn}");
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &cert,
            "-days",
            "1",
            "-subj",
            &subj,
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    )
}

/// A key and a certificate for `cn` signed by the CA `ca`, with the extensions
/// in `ext` (an openssl extension file body).
fn make_signed(dir: &Path, ca: &str, name: &str, cn: &str, ext: &str) -> anyhow::Result<()> {
    let key = format!("{name}-key.pem");
    let csr = format!("{name}.csr");
    let cert = format!("{name}.pem");
    let ext_file = format!("{name}.ext");
    std::fs::write(dir.join(&ext_file), ext).context("cannot write an extension file")?;
    let subj = format!("/CN={cn}");
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &csr,
            "-subj",
            &subj,
        ],
    )?;
    let ca_cert = format!("{ca}.pem");
    let ca_key = format!("{ca}-key.pem");
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca_cert,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-out",
            &cert,
            "-days",
            "1",
            "-sha256",
            "-extfile",
            &ext_file,
        ],
    )
}
