//! Records as etcd values: [`Versioned`] (a record with the version it was read
//! at) and the JSON encoding of the contract (values readable with etcdctl), with
//! errors that name the key. Depends only on [`crate::error`].

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{Result, TopoError};

/// A record together with the version (etcd mod_revision) it was read at.
#[derive(Debug, Clone, PartialEq)]
pub struct Versioned<T> {
    /// The decoded record.
    pub value: T,
    /// etcd `mod_revision` of the key; the version for CAS.
    pub version: i64,
}

/// Encodes a record as JSON (the contract: values readable with etcdctl).
pub(crate) fn encode<T: Serialize>(key: &str, value: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(|e| TopoError::BadRecord {
        key: key.to_string(),
        reason: format!("cannot encode: {e}"),
    })
}

/// Decodes a JSON record, naming the key when it does not parse.
pub(crate) fn decode<T: DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| TopoError::BadRecord {
        key: key.to_string(),
        reason: e.to_string(),
    })
}

/// Decodes a JSON record read at `version`.
pub(crate) fn decode_versioned<T: DeserializeOwned>(
    key: &str,
    bytes: &[u8],
    version: i64,
) -> Result<Versioned<T>> {
    Ok(Versioned {
        value: decode(key, bytes)?,
        version,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_names_the_key() {
        let e = decode::<u32>("/k", b"{nope").unwrap_err();
        match e {
            TopoError::BadRecord { key, .. } => assert_eq!(key, "/k"),
            other => panic!("{other}"),
        }
    }

    #[test]
    fn encode_then_decode_round_trips() {
        let bytes = encode("/k", &vec![1, 2]).unwrap();
        assert_eq!(bytes, b"[1,2]");
        let v: Versioned<Vec<i32>> = decode_versioned("/k", &bytes, 9).unwrap();
        assert_eq!(
            v,
            Versioned {
                value: vec![1, 2],
                version: 9
            }
        );
    }
}
