//! The `s3` backend's client errors as one line for operators: the whole cause
//! chain, with S3's XML error documents reduced to their code and message.
//!
//! May call: `std` only.

/// The whole chain of an error's causes on one line (object_store nests the
/// HTTP status and the server's reason several levels down), with an S3 error
/// document reduced to its code and message.
pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = summarize_xml(&e.to_string());
    let mut src = e.source();
    while let Some(x) = src {
        let t = summarize_xml(&x.to_string());
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        src = x.source();
    }
    s.replace('\n', " ")
}

/// `text` with every S3 error document (`<?xml …?><Error><Code>C</Code>
/// <Message>M</Message>…</Error>`) replaced by `C: M`. Pure.
fn summarize_xml(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    loop {
        let start = match (rest.find("<?xml"), rest.find("<Error>")) {
            (Some(a), Some(b)) => a.min(b),
            (Some(a), None) => a,
            (None, Some(b)) => b,
            (None, None) => break,
        };
        let Some(end) = rest[start..]
            .find("</Error>")
            .map(|i| start + i + "</Error>".len())
        else {
            break;
        };
        let doc = &rest[start..end];
        let field = |tag: &str| {
            let open = format!("<{tag}>");
            let i = doc.find(&open)? + open.len();
            let j = doc[i..].find(&format!("</{tag}>"))?;
            Some(doc[i..i + j].to_string())
        };
        out.push_str(&rest[..start]);
        match (field("Code"), field("Message")) {
            (Some(c), Some(m)) => out.push_str(&format!("{c}: {m}")),
            (Some(c), None) => out.push_str(&c),
            _ => out.push_str("(an S3 error without a code)"),
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::summarize_xml;

    #[test]
    fn s3_error_documents_are_summarized() {
        let body = "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<Error><Code>NoSuchBucket</Code>\
                    <Message>The specified bucket does not exist</Message><RequestId>x</RequestId>\
                    </Error>";
        assert_eq!(
            summarize_xml(&format!("GET http://h/b: 404 Not Found: {body}")),
            "GET http://h/b: 404 Not Found: NoSuchBucket: The specified bucket does not exist"
        );
        assert_eq!(
            summarize_xml("a <Error><Code>SlowDown</Code></Error> b"),
            "a SlowDown b"
        );
        assert_eq!(summarize_xml("no xml here"), "no xml here");
        assert_eq!(
            summarize_xml("<Error> unterminated"),
            "<Error> unterminated"
        );
    }
}
