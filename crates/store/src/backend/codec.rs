//! Record encoding. A record is fixed-width metadata followed by the value:
//!
//! ```text
//! create_revision i64 LE | mod_revision i64 LE | version i64 LE | lease i64 LE | value ...
//! ```
//!
//! A tombstone has version 0 and no value. Key lists (the `revisions` table) are a sequence of
//! `u32 LE length | key bytes`.

use crate::error::{Error, Result};
use crate::types::KeyValue;

const HEADER: usize = 32;

/// A decoded record: the metadata of one version of a key plus its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Record {
    pub(crate) create_revision: i64,
    pub(crate) mod_revision: i64,
    pub(crate) version: i64,
    pub(crate) lease: i64,
    pub(crate) value: Vec<u8>,
}

impl Record {
    pub(crate) fn tombstone(revision: i64) -> Self {
        Record {
            create_revision: 0,
            mod_revision: revision,
            version: 0,
            lease: 0,
            value: Vec::new(),
        }
    }

    pub(crate) fn is_tombstone(&self) -> bool {
        self.version == 0
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER + self.value.len());
        out.extend_from_slice(&self.create_revision.to_le_bytes());
        out.extend_from_slice(&self.mod_revision.to_le_bytes());
        out.extend_from_slice(&self.version.to_le_bytes());
        out.extend_from_slice(&self.lease.to_le_bytes());
        out.extend_from_slice(&self.value);
        out
    }

    pub(crate) fn decode(bytes: &[u8], table: &'static str) -> Result<Self> {
        let field = |i: usize| -> Result<i64> {
            let raw = bytes
                .get(i * 8..i * 8 + 8)
                .ok_or(Error::Corrupt { table })?;
            let mut buf = [0u8; 8];
            buf.copy_from_slice(raw);
            Ok(i64::from_le_bytes(buf))
        };
        Ok(Record {
            create_revision: field(0)?,
            mod_revision: field(1)?,
            version: field(2)?,
            lease: field(3)?,
            value: bytes[HEADER..].to_vec(),
        })
    }

    /// Decodes only the metadata, for reads that do not need the value.
    pub(crate) fn decode_meta(bytes: &[u8], table: &'static str) -> Result<Self> {
        let head = bytes.get(..HEADER).ok_or(Error::Corrupt { table })?;
        Self::decode(head, table)
    }

    pub(crate) fn into_kv(self, key: Vec<u8>) -> KeyValue {
        KeyValue {
            key,
            create_revision: self.create_revision,
            mod_revision: self.mod_revision,
            version: self.version,
            value: self.value,
            lease: self.lease,
        }
    }
}

pub(crate) fn encode_keys<'a>(keys: impl IntoIterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut out = Vec::new();
    for key in keys {
        out.extend_from_slice(&(key.len() as u32).to_le_bytes());
        out.extend_from_slice(key);
    }
    out
}

pub(crate) fn decode_keys(mut bytes: &[u8]) -> Result<Vec<Vec<u8>>> {
    let mut keys = Vec::new();
    while !bytes.is_empty() {
        let corrupt = || Error::Corrupt { table: "revisions" };
        let (len, rest) = bytes.split_at_checked(4).ok_or_else(corrupt)?;
        let mut buf = [0u8; 4];
        buf.copy_from_slice(len);
        let (key, rest) = rest
            .split_at_checked(u32::from_le_bytes(buf) as usize)
            .ok_or_else(corrupt)?;
        keys.push(key.to_vec());
        bytes = rest;
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_with_and_without_values() {
        let rec = Record {
            create_revision: 2,
            mod_revision: 9,
            version: 3,
            lease: 7,
            value: b"hello".to_vec(),
        };
        assert_eq!(Record::decode(&rec.encode(), "t").unwrap(), rec);
        let tomb = Record::tombstone(12);
        assert!(Record::decode(&tomb.encode(), "t").unwrap().is_tombstone());
        assert!(Record::decode(&[1, 2, 3], "t").is_err());
    }

    #[test]
    fn key_lists_round_trip_and_reject_truncation() {
        let keys: Vec<&[u8]> = vec![b"a", b"", b"longer key"];
        let enc = encode_keys(keys.iter().copied());
        let dec = decode_keys(&enc).unwrap();
        assert_eq!(dec, vec![b"a".to_vec(), Vec::new(), b"longer key".to_vec()]);
        assert!(decode_keys(&enc[..enc.len() - 1]).is_err());
    }
}
