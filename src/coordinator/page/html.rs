//! Small HTML helpers of the status page: escaping every string that came from
//! etcd, hiding credentials an error message might quote, the light badge.
//!
//! Pure; part of [`super`].

use crate::coordinator::recoverability::Light;

/// `s` safe inside an element or a quoted attribute.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Words that, followed by `=` or `:`, introduce a secret in a message.
const SECRET_WORDS: [&str; 6] = [
    "password",
    "passwd",
    "secret",
    "token",
    "access_key",
    "identity",
];

/// `s` with what looks like a credential replaced by `***`: the user and password
/// of a URL (`s3://user:pass@host` → `s3://***@host`) and the value after
/// `password=`, `secret:` and the like. Error messages are shown on the page and
/// could quote a connection string.
pub fn redact(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for (i, word) in s.split(' ').enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(&redact_word(word));
    }
    out
}

fn redact_word(w: &str) -> String {
    if let Some(at) = w.find("://") {
        let rest = &w[at + 3..];
        let host_end = rest.find('/').unwrap_or(rest.len());
        if let Some(u) = rest[..host_end].rfind('@') {
            return format!("{}://***@{}", &w[..at], &rest[u + 1..]);
        }
    }
    let lower = w.to_ascii_lowercase();
    for word in SECRET_WORDS {
        if let Some(pos) = lower.find(word) {
            let after = pos + word.len();
            if matches!(w.as_bytes().get(after), Some(b'=') | Some(b':')) && after + 1 < w.len() {
                return format!("{}***", &w[..after + 1]);
            }
        }
    }
    w.to_string()
}

/// A coloured badge naming the light.
pub fn badge(light: Light) -> String {
    format!("<span class=\"badge {l}\">{l}</span>", l = light.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_redacts() {
        let cases = [
            ("ks<script>", "ks&lt;script&gt;"),
            ("a&b \"c\" 'd'", "a&amp;b &quot;c&quot; &#39;d&#39;"),
            ("plain", "plain"),
        ];
        for (input, want) in cases {
            assert_eq!(esc(input), want);
        }
        let cases = [
            (
                "GET s3://AKIA:hunter2@minio:9000/b/k failed",
                "GET s3://***@minio:9000/b/k failed",
            ),
            ("http://host/path@x ok", "http://host/path@x ok"),
            (
                "login password=hunter2 refused",
                "login password=*** refused",
            ),
            ("Secret:abc", "Secret:***"),
            ("no secrets here: fine", "no secrets here: fine"),
            ("password= empty", "password= empty"),
        ];
        for (input, want) in cases {
            assert_eq!(redact(input), want, "{input}");
        }
    }
}
