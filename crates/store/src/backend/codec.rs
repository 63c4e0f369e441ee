//! Record encoding. A `kv` row is its key followed by fixed-width metadata and the value:
//!
//! ```text
//! key_len u32 LE | key | create_revision i64 LE | mod_revision i64 LE | version i64 LE
//!                      | lease i64 LE | value ...
//! ```
//!
//! A tombstone has version 0 and no value.

use crate::error::{Error, Result};
use crate::mvcc::index::Life;
use crate::types::KeyValue;

const META: usize = 32;

/// One version of a key: its metadata and value.
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

    /// What the index keeps of this version (see [`Row::life`]).
    pub(crate) fn life(&self) -> Life {
        Life {
            create_revision: self.create_revision,
            version: self.version,
            lease: self.lease,
        }
    }

    /// Encodes the row for `key`.
    pub(crate) fn encode(&self, key: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(4 + key.len() + META + self.value.len());
        out.extend_from_slice(&(key.len() as u32).to_le_bytes());
        out.extend_from_slice(key);
        out.extend_from_slice(&self.create_revision.to_le_bytes());
        out.extend_from_slice(&self.mod_revision.to_le_bytes());
        out.extend_from_slice(&self.version.to_le_bytes());
        out.extend_from_slice(&self.lease.to_le_bytes());
        out.extend_from_slice(&self.value);
        out
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

/// A decoded row borrowing the stored bytes.
pub(crate) struct Row<'a> {
    pub(crate) key: &'a [u8],
    meta: &'a [u8],
    value: &'a [u8],
}

impl<'a> Row<'a> {
    pub(crate) fn parse(bytes: &'a [u8]) -> Result<Self> {
        let corrupt = || Error::Corrupt { table: "kv" };
        let (len, rest) = bytes.split_at_checked(4).ok_or_else(corrupt)?;
        let mut buf = [0u8; 4];
        buf.copy_from_slice(len);
        let (key, rest) = rest
            .split_at_checked(u32::from_le_bytes(buf) as usize)
            .ok_or_else(corrupt)?;
        let (meta, value) = rest.split_at_checked(META).ok_or_else(corrupt)?;
        Ok(Row { key, meta, value })
    }

    fn field(&self, i: usize) -> i64 {
        let mut buf = [0u8; 8];
        buf.copy_from_slice(&self.meta[i * 8..i * 8 + 8]);
        i64::from_le_bytes(buf)
    }

    pub(crate) fn version(&self) -> i64 {
        self.field(2)
    }

    pub(crate) fn is_tombstone(&self) -> bool {
        self.version() == 0
    }

    /// What the index keeps of this version, read from the row without decoding it whole.
    pub(crate) fn life(&self) -> Life {
        Life {
            create_revision: self.field(0),
            version: self.field(2),
            lease: self.field(3),
        }
    }

    /// The record, with its value unless `meta_only`.
    pub(crate) fn record(&self, meta_only: bool) -> Record {
        Record {
            create_revision: self.field(0),
            mod_revision: self.field(1),
            version: self.field(2),
            lease: self.field(3),
            value: if meta_only {
                Vec::new()
            } else {
                self.value.to_vec()
            },
        }
    }

    pub(crate) fn kv(&self, meta_only: bool) -> KeyValue {
        self.record(meta_only).into_kv(self.key.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_round_trip_with_and_without_values() {
        let rec = Record {
            create_revision: 2,
            mod_revision: 9,
            version: 3,
            lease: 7,
            value: b"hello".to_vec(),
        };
        let enc = rec.encode(b"key");
        let row = Row::parse(&enc).unwrap();
        assert_eq!(row.key, b"key");
        assert_eq!(row.record(false), rec);
        assert!(row.record(true).value.is_empty());
        let tomb = Record::tombstone(12).encode(b"k");
        assert!(Row::parse(&tomb).unwrap().is_tombstone());
        assert!(Row::parse(&enc[..enc.len() - 6]).is_err());
        assert!(Row::parse(&[9, 0, 0, 0, 1]).is_err());
    }
}
