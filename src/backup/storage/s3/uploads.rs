//! Multipart uploads left unfinished under a prefix (a tablet killed mid-upload,
//! an abort that could not reach the server), which hold storage until aborted.
//! `object_store` can abort an upload by id but cannot list them, so listing is a
//! SigV4-signed `GET ?uploads&prefix=` (ListMultipartUploads) sent through
//! `object_store`'s own HTTP client and signer, and its XML answer is read here
//! ([`parse_list`], pure).
//!
//! May call: `object_store`, `http`, the storage module's errors.

use std::io;

use object_store::aws::AwsAuthorizer;
use object_store::client::{HttpConnector, HttpRequestBody, ReqwestConnector};
use object_store::multipart::MultipartStore;
use object_store::path::Path;
use object_store::ClientOptions;

use super::super::{StorageError, StorageResult};
use super::{error_chain, S3Storage};

/// An unfinished multipart upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingUpload {
    /// Its object key.
    pub key: String,
    /// Its upload id.
    pub upload_id: String,
}

/// One page of a ListMultipartUploads answer.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct ListPage {
    pub uploads: Vec<PendingUpload>,
    /// `(key-marker, upload-id-marker)` of the next page, when truncated.
    pub next: Option<(String, String)>,
}

/// The text of the first `<tag>…</tag>` in `xml`, unescaped.
fn tag<'a>(xml: &'a str, name: &str) -> Option<std::borrow::Cow<'a, str>> {
    let open = format!("<{name}>");
    let close = format!("</{name}>");
    let start = xml.find(&open)? + open.len();
    let end = start + xml[start..].find(&close)?;
    Some(unescape(&xml[start..end]))
}

fn unescape(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.contains('&') {
        return s.into();
    }
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
        .into()
}

/// Reads a ListMultipartUploads answer. Pure.
pub(super) fn parse_list(xml: &str) -> Result<ListPage, String> {
    if !xml.contains("<ListMultipartUploadsResult") {
        return Err(format!(
            "not a ListMultipartUploads answer: {}",
            xml.chars().take(200).collect::<String>()
        ));
    }
    let mut page = ListPage::default();
    let mut rest = xml;
    while let Some(i) = rest.find("<Upload>") {
        let after = &rest[i + "<Upload>".len()..];
        let end = after
            .find("</Upload>")
            .ok_or("unterminated <Upload> element")?;
        let block = &after[..end];
        match (tag(block, "Key"), tag(block, "UploadId")) {
            (Some(k), Some(id)) => page.uploads.push(PendingUpload {
                key: k.into_owned(),
                upload_id: id.into_owned(),
            }),
            _ => return Err("an <Upload> without Key or UploadId".into()),
        }
        rest = &after[end..];
    }
    if tag(xml, "IsTruncated").as_deref() == Some("true") {
        let key = tag(xml, "NextKeyMarker").unwrap_or_default().into_owned();
        let id = tag(xml, "NextUploadIdMarker")
            .unwrap_or_default()
            .into_owned();
        if key.is_empty() && id.is_empty() {
            return Err("a truncated answer without markers".into());
        }
        page.next = Some((key, id));
    }
    Ok(page)
}

/// Percent-encodes a query value (RFC 3986 unreserved characters kept), as SigV4
/// wants it.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl S3Storage {
    /// The unfinished multipart uploads whose keys are under `prefix/`.
    pub(super) async fn pending_uploads(&self, prefix: &Path) -> StorageResult<Vec<PendingUpload>> {
        let fail = |why: String| {
            StorageError::io(
                format!("listing unfinished uploads under {}", self.url(prefix)),
                io::Error::other(why),
            )
        };
        let client = ReqwestConnector::default()
            .connect(&ClientOptions::new().with_allow_http(true))
            .map_err(|e| fail(error_chain(&e)))?;
        let cred = self
            .s3
            .credentials()
            .get_credential()
            .await
            .map_err(|e| fail(error_chain(&e)))?;
        let base = self.cfg.bucket_url().map_err(fail)?;
        let prefix_q = encode(&format!("{prefix}/"));
        let mut out = Vec::new();
        let mut marker: Option<(String, String)> = None;
        loop {
            // (The signer puts the parameters in canonical order itself.)
            let mut q = String::new();
            if let Some((k, id)) = &marker {
                q.push_str(&format!("key-marker={}&", encode(k)));
                q.push_str(&format!("prefix={prefix_q}&uploads=&"));
                q.push_str(&format!("upload-id-marker={}", encode(id)));
            } else {
                q.push_str(&format!("prefix={prefix_q}&uploads="));
            }
            let mut req = http::Request::builder()
                .method("GET")
                .uri(format!("{base}?{q}"))
                .body(HttpRequestBody::empty())
                .map_err(|e| fail(e.to_string()))?;
            AwsAuthorizer::new(&cred, "s3", &self.cfg.region)
                .try_authorize(&mut req, None)
                .map_err(|e| fail(error_chain(&e)))?;
            let resp = client
                .execute(req)
                .await
                .map_err(|e| fail(error_chain(&e)))?;
            let status = resp.status();
            let body = resp
                .into_body()
                .bytes()
                .await
                .map_err(|e| fail(error_chain(&e)))?;
            let text = String::from_utf8_lossy(&body);
            if !status.is_success() {
                let code = tag(&text, "Code").unwrap_or_default().into_owned();
                return Err(fail(format!("HTTP {status} {code}")));
            }
            let page = parse_list(&text).map_err(fail)?;
            out.extend(page.uploads);
            match page.next {
                Some(m) => marker = Some(m),
                None => break,
            }
        }
        Ok(out)
    }

    /// The unfinished uploads under `prefix/`, or none when the server cannot list
    /// them (logged: not every S3-compatible server implements the call).
    pub(super) async fn pending_uploads_or_none(&self, prefix: &Path) -> Vec<PendingUpload> {
        self.pending_uploads(prefix).await.unwrap_or_else(|e| {
            tracing::debug!(error = %e, "cannot list unfinished multipart uploads");
            Vec::new()
        })
    }

    /// Aborts these unfinished multipart uploads.
    pub(super) async fn abort_uploads(&self, pending: &[PendingUpload]) -> StorageResult<()> {
        for u in pending {
            let key = Path::from(u.key.as_str());
            match self.s3.abort_multipart(&key, &u.upload_id).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(self.err(e, "upload", "aborting an upload of", &key)),
            }
            tracing::info!(object = %self.url(&key), "aborted an unfinished multipart upload");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_answers_are_read() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<ListMultipartUploadsResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <Bucket>b</Bucket><KeyMarker></KeyMarker><UploadIdMarker></UploadIdMarker>
  <NextKeyMarker>ks/0/n/1</NextKeyMarker><NextUploadIdMarker>id2</NextUploadIdMarker>
  <MaxUploads>1000</MaxUploads><IsTruncated>true</IsTruncated>
  <Upload><Key>ks/0/n/0</Key><UploadId>id1</UploadId><Initiated>2024-01-01T00:00:00Z</Initiated></Upload>
  <Upload><Key>ks/0/n/a&amp;b</Key><UploadId>id2</UploadId></Upload>
</ListMultipartUploadsResult>"#;
        let page = parse_list(xml).unwrap();
        assert_eq!(
            page.uploads,
            vec![
                PendingUpload {
                    key: "ks/0/n/0".into(),
                    upload_id: "id1".into()
                },
                PendingUpload {
                    key: "ks/0/n/a&b".into(),
                    upload_id: "id2".into()
                },
            ]
        );
        assert_eq!(page.next, Some(("ks/0/n/1".into(), "id2".into())));
        let empty = "<ListMultipartUploadsResult><IsTruncated>false</IsTruncated></ListMultipartUploadsResult>";
        assert_eq!(parse_list(empty).unwrap(), ListPage::default());
        assert!(parse_list("<Error><Code>AccessDenied</Code></Error>").is_err());
        assert!(parse_list("<ListMultipartUploadsResult><Upload><Key>k</Key></Upload>").is_err());
        assert!(parse_list(
            "<ListMultipartUploadsResult><IsTruncated>true</IsTruncated></ListMultipartUploadsResult>"
        )
        .is_err());
        assert_eq!(encode("ks/0/a b"), "ks%2F0%2Fa%20b");
    }
}
