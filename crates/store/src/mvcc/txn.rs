//! Request validation shared by every write path, and compare evaluation.
//!
//! Validation runs before a command touches the tables, so a command that fails validation
//! changes nothing and takes no revision.

use std::collections::HashSet;

use crate::error::{Error, Result};
use crate::mvcc::keys::KeyRange;
use crate::mvcc::read::{KvTable, View, read_revision};
use crate::types::{
    Compare, CompareResult, CompareTarget, DeleteRangeRequest, KeyValue, PutRequest, RangeRequest,
    RequestOp, ResponseOp, TxnRequest, TxnResponse,
};

/// The most operations a txn may carry in its compares or in either branch (etcd's
/// `--max-txn-ops` default).
pub const MAX_TXN_OPS: usize = 128;

pub(crate) fn check_range(req: &RangeRequest) -> Result<()> {
    if req.key.is_empty() {
        return Err(Error::KeyNotProvided);
    }
    Ok(())
}

pub(crate) fn check_put(req: &PutRequest) -> Result<()> {
    if req.key.is_empty() {
        return Err(Error::KeyNotProvided);
    }
    if req.ignore_value && !req.value.is_empty() {
        return Err(Error::ValueProvided);
    }
    if req.ignore_lease && req.lease != 0 {
        return Err(Error::LeaseProvided);
    }
    Ok(())
}

pub(crate) fn check_delete(req: &DeleteRangeRequest) -> Result<()> {
    if req.key.is_empty() {
        return Err(Error::KeyNotProvided);
    }
    Ok(())
}

/// etcd's `checkTxnRequest` followed by `checkIntervals`.
pub(crate) fn check_txn(req: &TxnRequest) -> Result<()> {
    check_txn_shape(req)?;
    check_intervals(&req.success)?;
    check_intervals(&req.failure)?;
    Ok(())
}

fn check_txn_shape(req: &TxnRequest) -> Result<()> {
    let ops = req
        .compare
        .len()
        .max(req.success.len())
        .max(req.failure.len());
    if ops > MAX_TXN_OPS {
        return Err(Error::TooManyTxnOps { limit: MAX_TXN_OPS });
    }
    if req.compare.iter().any(|c| c.key.is_empty()) {
        return Err(Error::KeyNotProvided);
    }
    for op in req.success.iter().chain(&req.failure) {
        match op {
            RequestOp::Range(r) => check_range(r)?,
            RequestOp::Put(p) => check_put(p)?,
            RequestOp::DeleteRange(d) => check_delete(d)?,
            RequestOp::Txn(t) => check_txn_shape(t)?,
        }
    }
    Ok(())
}

/// Within one branch no key may be put twice, and no put may fall inside a delete. Nested
/// txns contribute the puts and deletes of both their branches; the same key put in both
/// branches of one nested txn is fine, since only one branch runs.
fn check_intervals(ops: &[RequestOp]) -> Result<(HashSet<Vec<u8>>, Vec<KeyRange>)> {
    let mut dels: Vec<KeyRange> = ops
        .iter()
        .filter_map(|op| match op {
            RequestOp::DeleteRange(d) => Some(KeyRange::new(&d.key, &d.range_end)),
            _ => None,
        })
        .collect();
    let deleted = |dels: &[KeyRange], key: &[u8]| dels.iter().any(|r| r.contains(key));

    let mut puts: HashSet<Vec<u8>> = HashSet::new();
    for op in ops {
        let RequestOp::Txn(nested) = op else { continue };
        let (puts_then, dels_then) = check_intervals(&nested.success)?;
        let (puts_else, dels_else) = check_intervals(&nested.failure)?;
        for key in &puts_then {
            if puts.contains(key) || deleted(&dels, key) {
                return Err(Error::DuplicateKey);
            }
        }
        puts.extend(puts_then.iter().cloned());
        for key in puts_else {
            if (puts.contains(&key) && !puts_then.contains(&key)) || deleted(&dels, &key) {
                return Err(Error::DuplicateKey);
            }
            puts.insert(key);
        }
        dels.extend(dels_then);
        dels.extend(dels_else);
    }
    for op in ops {
        let RequestOp::Put(put) = op else { continue };
        if puts.contains(&put.key) || deleted(&dels, &put.key) {
            return Err(Error::DuplicateKey);
        }
        puts.insert(put.key.clone());
    }
    Ok((puts, dels))
}

/// Compares one key's state with a compare's operand. A missing key compares as all zeros
/// (so `mod_revision == 0` means "absent"); the caller handles VALUE on a missing key.
pub(crate) fn compare_kv(cmp: &Compare, kv: &KeyValue) -> bool {
    let ord = match &cmp.target {
        CompareTarget::Version(v) => kv.version.cmp(v),
        CompareTarget::Create(v) => kv.create_revision.cmp(v),
        CompareTarget::Mod(v) => kv.mod_revision.cmp(v),
        CompareTarget::Lease(v) => kv.lease.cmp(v),
        CompareTarget::Value(v) => kv.value.as_slice().cmp(v.as_slice()),
    };
    match cmp.result {
        CompareResult::Equal => ord.is_eq(),
        CompareResult::NotEqual => ord.is_ne(),
        CompareResult::Greater => ord.is_gt(),
        CompareResult::Less => ord.is_lt(),
    }
}

impl<T: KvTable> View<'_, T> {
    /// Evaluates one compare against the current state: every key in its range must
    /// satisfy it.
    pub(crate) fn compare(&self, cmp: &Compare) -> Result<bool> {
        let kvs = self.live(&KeyRange::new(&cmp.key, &cmp.range_end))?;
        if kvs.is_empty() {
            // A missing key has no value to compare; every other target compares as zero.
            return Ok(!matches!(cmp.target, CompareTarget::Value(_))
                && compare_kv(cmp, &KeyValue::default()));
        }
        Ok(kvs.iter().all(|kv| compare_kv(cmp, kv)))
    }

    /// etcd's `compareToPath`: every compare, nested ones included, is evaluated against
    /// the state before the txn runs; `path` records the branch taken at each txn, depth
    /// first.
    pub(crate) fn compare_path(&self, req: &TxnRequest, path: &mut Vec<bool>) -> Result<()> {
        let mut ok = true;
        for cmp in &req.compare {
            if !self.compare(cmp)? {
                ok = false;
                break;
            }
        }
        path.push(ok);
        for op in req.branch(ok) {
            if let RequestOp::Txn(nested) = op {
                self.compare_path(nested, path)?;
            }
        }
        Ok(())
    }

    /// A txn that cannot write, served from a read snapshot without taking the write path.
    /// Same validation, branch choice and responses as the apply path.
    pub(crate) fn read_only_txn(&self, req: &TxnRequest) -> Result<TxnResponse> {
        debug_assert!(req.is_read_only());
        check_txn(req)?;
        let mut path = Vec::new();
        self.compare_path(req, &mut path)?;
        self.check_ranges(req, &mut path.iter().copied())?;
        let mut resp = self.run_ranges(req, &mut path.iter().copied())?;
        resp.revision = self.current;
        Ok(resp)
    }

    fn check_ranges(&self, req: &TxnRequest, path: &mut impl Iterator<Item = bool>) -> Result<()> {
        let ops = req.branch(path.next().unwrap_or(false));
        for op in ops {
            match op {
                RequestOp::Range(r) => {
                    read_revision(r.revision, self.current, self.compacted)?;
                }
                RequestOp::Txn(nested) => self.check_ranges(nested, path)?,
                RequestOp::Put(_) | RequestOp::DeleteRange(_) => {}
            }
        }
        Ok(())
    }

    fn run_ranges(
        &self,
        req: &TxnRequest,
        path: &mut impl Iterator<Item = bool>,
    ) -> Result<TxnResponse> {
        let succeeded = path.next().unwrap_or(false);
        let ops = req.branch(succeeded);
        let mut responses = Vec::with_capacity(ops.len());
        for op in ops {
            responses.push(match op {
                RequestOp::Range(r) => ResponseOp::Range(self.range(r)?),
                RequestOp::Txn(nested) => ResponseOp::Txn(self.run_ranges(nested, path)?),
                RequestOp::Put(_) | RequestOp::DeleteRange(_) => {
                    unreachable!("read_only_txn is only called for txns that cannot write")
                }
            });
        }
        Ok(TxnResponse {
            revision: 0,
            succeeded,
            responses,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(k: &str) -> RequestOp {
        RequestOp::Put(PutRequest {
            key: k.into(),
            value: b"v".to_vec(),
            ..Default::default()
        })
    }

    fn del(k: &str, end: &str) -> RequestOp {
        RequestOp::DeleteRange(DeleteRangeRequest {
            key: k.into(),
            range_end: end.into(),
            prev_kv: false,
        })
    }

    fn txn(success: Vec<RequestOp>, failure: Vec<RequestOp>) -> TxnRequest {
        TxnRequest {
            compare: vec![],
            success,
            failure,
        }
    }

    #[test]
    fn duplicate_and_overlapping_writes_in_a_branch_are_rejected() {
        let bad = [
            txn(vec![put("a"), put("a")], vec![]),
            txn(vec![del("a", "c"), put("b")], vec![]),
            txn(
                vec![put("b"), RequestOp::Txn(txn(vec![put("b")], vec![]))],
                vec![],
            ),
            txn(
                vec![del("a", ""), RequestOp::Txn(txn(vec![], vec![put("a")]))],
                vec![],
            ),
        ];
        for t in bad {
            assert!(matches!(check_txn(&t), Err(Error::DuplicateKey)), "{t:?}");
        }
    }

    #[test]
    fn non_overlapping_writes_and_exclusive_nested_branches_are_accepted() {
        let good = [
            txn(vec![put("a")], vec![put("a")]),
            txn(vec![put("a"), put("b"), del("c", "d")], vec![]),
            txn(vec![del("a", ""), del("a", "")], vec![]),
            txn(
                vec![RequestOp::Txn(txn(vec![put("x")], vec![put("x")]))],
                vec![],
            ),
        ];
        for t in good {
            assert!(check_txn(&t).is_ok(), "{t:?}");
        }
    }

    #[test]
    fn more_than_128_ops_in_a_branch_is_too_many() {
        let ops = (0..129).map(|i| put(&format!("k{i}"))).collect();
        assert!(matches!(
            check_txn(&txn(ops, vec![])),
            Err(Error::TooManyTxnOps { .. })
        ));
        let ops = (0..128).map(|i| put(&format!("k{i}"))).collect();
        assert!(check_txn(&txn(ops, vec![])).is_ok());
    }
}
