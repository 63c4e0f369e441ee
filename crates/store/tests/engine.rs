//! Table-driven tests of [`Engine`]: etcd's MVCC semantics through the one apply path.
//!
//! Every read case runs twice, as a plain Range and as a Range inside a read-only Txn (as
//! etcd's `kv_test.go` does), and both answers must agree.

use redb::Durability;
use stead_store::{
    AlarmType, Command, CommandResponse, Compare, CompareResult, CompareTarget, DeleteRangeRequest,
    DeleteRangeResponse, Engine, EngineOptions, Error, Event, EventType, KeyValue, MAX_LEASE_TTL,
    MAX_TXN_OPS, PutRequest, PutResponse, RangeRequest, RangeResponse, RequestOp, ResponseOp,
    RevisionEvents, SortOrder, SortTarget, TxnRequest, TxnResponse,
};
use tempfile::TempDir;

// ---------------------------------------------------------------------------------------
// Fixture and request builders
// ---------------------------------------------------------------------------------------

struct Db {
    dir: TempDir,
    engine: Engine,
}

fn db() -> Db {
    let dir = tempfile::tempdir().expect("temp dir");
    let engine =
        Engine::open(&dir.path().join("db"), &EngineOptions::default()).expect("engine opens");
    Db { dir, engine }
}

fn b(s: &str) -> Vec<u8> {
    s.as_bytes().to_vec()
}

fn put_req(key: &str, value: &str) -> PutRequest {
    PutRequest {
        key: b(key),
        value: b(value),
        ..PutRequest::default()
    }
}

fn del_req(key: &str, range_end: &str) -> DeleteRangeRequest {
    DeleteRangeRequest {
        key: b(key),
        range_end: b(range_end),
        prev_kv: false,
    }
}

fn range_req(key: &str, range_end: &str) -> RangeRequest {
    RangeRequest {
        key: b(key),
        range_end: b(range_end),
        ..RangeRequest::default()
    }
}

fn cmp(key: &str, result: CompareResult, target: CompareTarget) -> Compare {
    Compare {
        result,
        target,
        key: b(key),
        range_end: Vec::new(),
    }
}

fn txn(compare: Vec<Compare>, success: Vec<RequestOp>, failure: Vec<RequestOp>) -> TxnRequest {
    TxnRequest {
        compare,
        success,
        failure,
    }
}

fn put_op(key: &str, value: &str) -> RequestOp {
    RequestOp::Put(put_req(key, value))
}

fn del_op(key: &str, range_end: &str) -> RequestOp {
    RequestOp::DeleteRange(del_req(key, range_end))
}

fn range_op(key: &str, range_end: &str) -> RequestOp {
    RequestOp::Range(range_req(key, range_end))
}

fn keys(kvs: &[KeyValue]) -> Vec<String> {
    kvs.iter()
        .map(|kv| String::from_utf8_lossy(&kv.key).into_owned())
        .collect()
}

/// Errors are not `PartialEq`; their `Debug` form carries every field.
fn same_error<T: std::fmt::Debug>(got: &Result<T, Error>, want: &Error) -> bool {
    matches!(got, Err(e) if format!("{e:?}") == format!("{want:?}"))
}

impl Db {
    fn apply(&self, cmd: Command) -> Result<CommandResponse, Error> {
        let mut batch = self
            .engine
            .apply_batch(&[&cmd], Durability::None)
            .expect("batch commits");
        assert_eq!(batch.responses.len(), 1);
        batch.responses.pop().expect("one response")
    }

    fn rev(&self) -> i64 {
        self.engine.revisions().expect("revisions").0
    }

    fn compacted(&self) -> i64 {
        self.engine.revisions().expect("revisions").1
    }

    fn try_put(&self, req: PutRequest) -> Result<PutResponse, Error> {
        match self.apply(Command::Put(req))? {
            CommandResponse::Put(r) => Ok(r),
            other => panic!("put answered {other:?}"),
        }
    }

    fn put(&self, key: &str, value: &str) -> PutResponse {
        self.try_put(put_req(key, value)).expect("put succeeds")
    }

    fn put_lease(&self, key: &str, value: &str, lease: i64) -> PutResponse {
        self.try_put(PutRequest {
            lease,
            ..put_req(key, value)
        })
        .expect("put succeeds")
    }

    fn delete(&self, req: DeleteRangeRequest) -> DeleteRangeResponse {
        match self
            .apply(Command::DeleteRange(req))
            .expect("delete succeeds")
        {
            CommandResponse::DeleteRange(r) => r,
            other => panic!("delete answered {other:?}"),
        }
    }

    fn txn(&self, req: TxnRequest) -> Result<TxnResponse, Error> {
        match self.apply(Command::Txn(req))? {
            CommandResponse::Txn(r) => Ok(r),
            other => panic!("txn answered {other:?}"),
        }
    }

    fn compact(&self, revision: i64) -> Result<CommandResponse, Error> {
        self.apply(Command::Compact { revision })
    }

    fn grant(&self, id: i64, ttl: i64) -> Result<CommandResponse, Error> {
        self.apply(Command::LeaseGrant { id, ttl })
    }

    fn revoke(&self, id: i64) -> Result<CommandResponse, Error> {
        self.apply(Command::LeaseRevoke { id })
    }

    /// A Range served twice, plainly and inside a read-only txn; both must agree.
    fn range(&self, req: &RangeRequest) -> Result<RangeResponse, Error> {
        let plain = self.engine.range(req);
        let before = self.rev();
        let in_txn = self
            .txn(txn(vec![], vec![RequestOp::Range(req.clone())], vec![]))
            .map(|mut t| match t.responses.pop() {
                Some(ResponseOp::Range(r)) => r,
                other => panic!("txn range answered {other:?}"),
            });
        assert_eq!(self.rev(), before, "a read-only txn takes no revision");
        match (&plain, &in_txn) {
            (Ok(p), Ok(t)) => assert_eq!(p, t, "plain and txn range differ for {req:?}"),
            (Err(p), Err(t)) => assert_eq!(format!("{p:?}"), format!("{t:?}"), "{req:?}"),
            _ => panic!("plain {plain:?} and txn {in_txn:?} disagree for {req:?}"),
        }
        plain
    }

    fn get(&self, key: &str) -> Option<KeyValue> {
        let mut r = self.range(&range_req(key, "")).expect("get succeeds");
        assert!(r.kvs.len() <= 1);
        r.kvs.pop()
    }

    fn get_at(&self, key: &str, revision: i64) -> Result<Option<KeyValue>, Error> {
        let req = RangeRequest {
            revision,
            ..range_req(key, "")
        };
        self.range(&req).map(|mut r| r.kvs.pop())
    }

    fn all_at(&self, revision: i64) -> Result<Vec<KeyValue>, Error> {
        let req = RangeRequest {
            revision,
            ..range_req("\0", "\0")
        };
        self.range(&req).map(|r| r.kvs)
    }

    fn events(&self, from: i64) -> Vec<RevisionEvents> {
        self.engine
            .read_events(from, i64::MAX, usize::MAX)
            .expect("history is readable")
    }
}

fn kv(key: &str, value: &str, create: i64, modified: i64, version: i64, lease: i64) -> KeyValue {
    KeyValue {
        key: b(key),
        create_revision: create,
        mod_revision: modified,
        version,
        value: b(value),
        lease,
    }
}

// ---------------------------------------------------------------------------------------
// Revisions, versions
// ---------------------------------------------------------------------------------------

#[test]
fn a_fresh_store_is_at_revision_one_and_the_first_write_makes_revision_two() {
    let db = db();
    assert_eq!(db.engine.revisions().unwrap(), (1, 0));
    assert_eq!(db.range(&range_req("a", "")).unwrap().revision, 1);
    assert_eq!(db.put("a", "1").revision, 2);
    assert_eq!(db.rev(), 2);
    assert_eq!(db.range(&range_req("a", "")).unwrap().revision, 2);
}

#[test]
fn every_put_takes_one_revision_and_tracks_create_mod_and_version() {
    let db = db();
    // (op, key, value, expected state of the key after the op)
    let steps: &[(&str, &str, Option<KeyValue>)] = &[
        ("a", "1", Some(kv("a", "1", 2, 2, 1, 0))),
        ("a", "2", Some(kv("a", "2", 2, 3, 2, 0))),
        ("b", "x", Some(kv("b", "x", 4, 4, 1, 0))),
        ("a", "3", Some(kv("a", "3", 2, 5, 3, 0))),
        ("a", "", Some(kv("a", "", 2, 6, 4, 0))),
    ];
    for (i, (key, value, want)) in steps.iter().enumerate() {
        let resp = db.put(key, value);
        assert_eq!(resp.revision, i as i64 + 2);
        assert_eq!(db.get(key), *want, "step {i}");
    }
}

#[test]
fn deleting_a_key_resets_its_version_and_recreation_starts_a_new_life() {
    let db = db();
    db.put("a", "1"); // 2
    db.put("a", "2"); // 3
    let d = db.delete(del_req("a", ""));
    assert_eq!((d.revision, d.deleted), (4, 1));
    assert_eq!(db.get("a"), None);
    db.put("a", "3"); // 5
    assert_eq!(db.get("a"), Some(kv("a", "3", 5, 5, 1, 0)));
}

#[test]
fn failed_commands_in_a_batch_change_nothing_and_the_rest_still_apply() {
    let db = db();
    let ok_a = Command::Put(put_req("a", "1"));
    let missing = Command::Put(PutRequest {
        ignore_value: true,
        ..put_req("nope", "")
    });
    let ok_b = Command::Put(put_req("b", "1"));
    let batch = db
        .engine
        .apply_batch(&[&ok_a, &missing, &ok_b], Durability::None)
        .unwrap();
    assert!(matches!(batch.responses[0], Ok(CommandResponse::Put(ref r)) if r.revision == 2));
    assert!(matches!(batch.responses[1], Err(Error::KeyNotFound)));
    assert!(matches!(batch.responses[2], Ok(CommandResponse::Put(ref r)) if r.revision == 3));
    assert_eq!(batch.revision, 3);
    let revs: Vec<i64> = batch.events.iter().map(|r| r.revision).collect();
    assert_eq!(revs, vec![2, 3]);
    assert_eq!(db.get("nope"), None);
}

#[test]
fn requests_without_a_key_are_rejected_and_take_no_revision() {
    let db = db();
    assert!(matches!(
        db.engine.range(&range_req("", "")),
        Err(Error::KeyNotProvided)
    ));
    assert!(matches!(
        db.try_put(put_req("", "v")),
        Err(Error::KeyNotProvided)
    ));
    let del = db.apply(Command::DeleteRange(del_req("", "\0")));
    assert!(matches!(del, Err(Error::KeyNotProvided)));
    let t = db.txn(txn(
        vec![cmp("", CompareResult::Equal, CompareTarget::Mod(0))],
        vec![],
        vec![],
    ));
    assert!(matches!(t, Err(Error::KeyNotProvided)));
    let t = db.txn(txn(vec![], vec![put_op("", "v")], vec![]));
    assert!(matches!(t, Err(Error::KeyNotProvided)));
    assert_eq!(db.rev(), 1);
}

#[test]
fn reopening_an_engine_keeps_revisions_data_and_leases() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    {
        let engine = Engine::open(&path, &EngineOptions::default()).unwrap();
        let cmds = [
            Command::LeaseGrant { id: 9, ttl: 60 },
            Command::Put(PutRequest {
                lease: 9,
                ..put_req("a", "1")
            }),
            Command::Put(put_req("b", "2")),
            Command::Compact { revision: 2 },
        ];
        let refs: Vec<&Command> = cmds.iter().collect();
        engine.apply_batch(&refs, Durability::None).unwrap();
        engine.sync().unwrap();
    }
    let engine = Engine::open(&path, &EngineOptions::default()).unwrap();
    assert_eq!(engine.revisions().unwrap(), (3, 2));
    let r = engine.range(&range_req("\0", "\0")).unwrap();
    assert_eq!(
        r.kvs,
        vec![kv("a", "1", 2, 2, 1, 9), kv("b", "2", 3, 3, 1, 0)]
    );
    assert_eq!(engine.leases().unwrap(), vec![(9, 60)]);
    assert_eq!(engine.key_count().unwrap(), 2);
}

#[test]
fn a_reopened_engine_continues_each_keys_life_from_what_is_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let keep_lease = |key: &str, value: &str| {
        Command::Put(PutRequest {
            ignore_lease: true,
            ..put_req(key, value)
        })
    };
    {
        let engine = Engine::open(&path, &EngineOptions::default()).unwrap();
        let cmds = [
            Command::LeaseGrant { id: 9, ttl: 60 },
            Command::Put(PutRequest {
                lease: 9,
                ..put_req("a", "1")
            }),
            keep_lease("a", "2"),
            Command::Put(put_req("b", "1")),
            Command::DeleteRange(del_req("b", "")),
        ];
        let refs: Vec<&Command> = cmds.iter().collect();
        engine.apply_batch(&refs, Durability::None).unwrap();
        engine.sync().unwrap();
    }
    let engine = Engine::open(&path, &EngineOptions::default()).unwrap();
    let cmds = [keep_lease("a", "3"), Command::Put(put_req("b", "2"))];
    let refs: Vec<&Command> = cmds.iter().collect();
    let batch = engine.apply_batch(&refs, Durability::None).unwrap();
    assert!(batch.responses.iter().all(Result::is_ok));
    let r = engine.range(&range_req("\0", "\0")).unwrap();
    // "a" goes on with its creation, version count and lease; "b" starts a new life.
    assert_eq!(
        r.kvs,
        vec![kv("a", "3", 2, 6, 3, 9), kv("b", "2", 7, 7, 1, 0)]
    );
}

#[test]
fn put_events_without_prev_kv_wanted_get_it_from_the_store_as_they_would_have_had_it() {
    let cmds = [
        Command::Put(put_req("a", "1")),
        Command::Put(put_req("a", "2")),
        Command::Put(PutRequest {
            prev_kv: true,
            ..put_req("a", "3")
        }),
        Command::Put(PutRequest {
            ignore_value: true,
            ..put_req("a", "")
        }),
        Command::Txn(txn(
            vec![],
            vec![put_op("b", "1"), put_op("a", "5")],
            vec![],
        )),
        Command::DeleteRange(del_req("b", "")),
        Command::Put(put_req("b", "2")),
    ];
    let refs: Vec<&Command> = cmds.iter().collect();
    let (full, lean) = (db(), db());
    let want = full.engine.apply_batch(&refs, Durability::None).unwrap();
    let got = lean
        .engine
        .apply_batch_with(&refs, Durability::None, &[], false)
        .unwrap();
    let ok = |r: Vec<Result<CommandResponse, Error>>| -> Vec<CommandResponse> {
        r.into_iter().map(|r| r.expect("command applies")).collect()
    };
    assert_eq!(ok(got.responses), ok(want.responses));
    let mut events: Vec<Event> = got.events.into_iter().flat_map(|r| r.events).collect();
    // Only the puts that read the previous version anyway (prev_kv, ignore_value) carry it.
    let lacking: Vec<i64> = events
        .iter()
        .filter(|e| e.lacks_prev_kv())
        .map(|e| e.kv.mod_revision)
        .collect();
    assert_eq!(lacking, vec![3, 6]);
    lean.engine.fill_prev_kvs(&mut events).unwrap();
    let want: Vec<Event> = want.events.into_iter().flat_map(|r| r.events).collect();
    assert_eq!(events, want);
}

// ---------------------------------------------------------------------------------------
// Range
// ---------------------------------------------------------------------------------------

#[test]
fn range_end_selects_one_key_every_key_from_key_or_a_prefix() {
    let db = db();
    for k in ["a", "foo", "foo/1", "foo/2", "fop", "z"] {
        db.put(k, "v");
    }
    let cases: &[(&str, &str, &[&str])] = &[
        ("foo", "", &["foo"]),
        ("fo", "", &[]),
        ("foo", "\0", &["foo", "foo/1", "foo/2", "fop", "z"]),
        ("foo/", "foo0", &["foo/1", "foo/2"]),
        ("foo", "fop", &["foo", "foo/1", "foo/2"]),
        ("\0", "\0", &["a", "foo", "foo/1", "foo/2", "fop", "z"]),
        ("a", "z", &["a", "foo", "foo/1", "foo/2", "fop"]),
        ("foo", "foo", &[]),
        ("fop", "foo", &[]),
        ("z", "a", &[]),
        ("zz", "\0", &[]),
    ];
    for (key, end, want) in cases {
        let r = db.range(&range_req(key, end)).unwrap();
        assert_eq!(keys(&r.kvs), *want, "range [{key:?}, {end:?})");
        assert_eq!(r.count, want.len() as i64, "count of [{key:?}, {end:?})");
        assert!(!r.more);
        assert_eq!(r.revision, 7);
    }
}

#[test]
fn limit_truncates_sets_more_and_count_still_counts_every_match() {
    let db = db();
    for k in ["a", "b", "c", "d", "e"] {
        db.put(k, "v");
    }
    // (limit, sort order, kvs, more)
    let cases: &[(i64, SortOrder, &[&str], bool)] = &[
        (0, SortOrder::None, &["a", "b", "c", "d", "e"], false),
        (-1, SortOrder::None, &["a", "b", "c", "d", "e"], false),
        (1, SortOrder::None, &["a"], true),
        (4, SortOrder::None, &["a", "b", "c", "d"], true),
        (5, SortOrder::None, &["a", "b", "c", "d", "e"], false),
        (9, SortOrder::None, &["a", "b", "c", "d", "e"], false),
        (2, SortOrder::Descend, &["e", "d"], true),
        (2, SortOrder::Ascend, &["a", "b"], true),
    ];
    for (limit, order, want, more) in cases {
        let req = RangeRequest {
            limit: *limit,
            sort_order: *order,
            ..range_req("a", "\0")
        };
        let r = db.range(&req).unwrap();
        assert_eq!(keys(&r.kvs), *want, "limit {limit} {order:?}");
        assert_eq!(r.more, *more, "more for limit {limit} {order:?}");
        assert_eq!(r.count, 5, "count for limit {limit} {order:?}");
    }
}

#[test]
fn kubernetes_style_pagination_with_a_pinned_revision_sees_one_snapshot() {
    let db = db();
    for k in ["p/a", "p/b", "p/c", "p/d", "p/e"] {
        db.put(k, "v");
    }
    let pinned = db.rev();
    let mut seen = Vec::new();
    let mut start = b("p/");
    loop {
        let req = RangeRequest {
            key: start.clone(),
            range_end: b("p0"),
            limit: 2,
            revision: pinned,
            ..RangeRequest::default()
        };
        let r = db.range(&req).unwrap();
        // Writes between pages must not show through the pinned revision.
        db.put("p/bb", "late");
        db.delete(del_req("p/e", ""));
        seen.extend(keys(&r.kvs));
        if !r.more {
            break;
        }
        start = r.kvs.last().unwrap().key.clone();
        start.push(0);
    }
    assert_eq!(seen, ["p/a", "p/b", "p/c", "p/d", "p/e"]);
}

#[test]
fn range_at_a_past_revision_sees_that_revision_and_the_header_has_the_current_one() {
    let db = db();
    db.put("a", "1"); // 2
    db.put("a", "2"); // 3
    db.delete(del_req("a", "")); // 4
    db.put("a", "3"); // 5
    db.put("b", "1"); // 6
    let cases: &[(i64, Option<KeyValue>, &[&str])] = &[
        (1, None, &[]),
        (2, Some(kv("a", "1", 2, 2, 1, 0)), &["a"]),
        (3, Some(kv("a", "2", 2, 3, 2, 0)), &["a"]),
        (4, None, &[]),
        (5, Some(kv("a", "3", 5, 5, 1, 0)), &["a"]),
        (6, Some(kv("a", "3", 5, 5, 1, 0)), &["a", "b"]),
        (0, Some(kv("a", "3", 5, 5, 1, 0)), &["a", "b"]),
    ];
    for (rev, want_a, want_all) in cases {
        assert_eq!(db.get_at("a", *rev).unwrap(), *want_a, "a at {rev}");
        assert_eq!(keys(&db.all_at(*rev).unwrap()), *want_all, "all at {rev}");
        let req = RangeRequest {
            revision: *rev,
            ..range_req("a", "")
        };
        assert_eq!(
            db.range(&req).unwrap().revision,
            6,
            "header revision at {rev}"
        );
    }
}

#[test]
fn range_above_the_current_revision_is_a_future_revision_error() {
    let db = db();
    db.put("a", "1");
    let err = db.get_at("a", 3);
    assert!(
        same_error(
            &err,
            &Error::FutureRevision {
                requested: 3,
                current: 2
            }
        ),
        "{err:?}"
    );
}

#[test]
fn range_below_the_compacted_revision_fails_but_exactly_at_it_is_readable() {
    let db = db();
    db.put("a", "1"); // 2
    db.put("a", "2"); // 3
    db.put("a", "3"); // 4
    db.compact(3).unwrap();
    let cases: &[(i64, Result<Option<&str>, Error>)] = &[
        (
            1,
            Err(Error::Compacted {
                requested: 1,
                compacted: 3,
            }),
        ),
        (
            2,
            Err(Error::Compacted {
                requested: 2,
                compacted: 3,
            }),
        ),
        (3, Ok(Some("2"))),
        (4, Ok(Some("3"))),
        (0, Ok(Some("3"))),
        (
            5,
            Err(Error::FutureRevision {
                requested: 5,
                current: 4,
            }),
        ),
    ];
    for (rev, want) in cases {
        let got = db.get_at("a", *rev);
        match want {
            Ok(v) => {
                let got = got.unwrap_or_else(|e| panic!("at {rev}: {e:?}"));
                assert_eq!(got.map(|kv| kv.value), v.map(b), "at {rev}");
            }
            Err(e) => assert!(same_error(&got, e), "at {rev}: {got:?}"),
        }
    }
}

/// The data for sorting and filtering:
///
/// | key | create | mod | version | value |
/// |-----|--------|-----|---------|-------|
/// | a   | 4      | 9   | 2       | "3"   |
/// | b   | 2      | 6   | 3       | "2"   |
/// | c   | 3      | 3   | 1       | "1"   |
fn sorting_fixture() -> Db {
    let db = db();
    db.put("b", "0"); // 2
    db.put("c", "1"); // 3
    db.put("a", "0"); // 4
    db.put("b", "0"); // 5
    db.put("b", "2"); // 6
    db.put("z", "0"); // 7
    db.put("z", "0"); // 8
    db.put("a", "3"); // 9
    assert_eq!(db.get("a"), Some(kv("a", "3", 4, 9, 2, 0)));
    assert_eq!(db.get("b"), Some(kv("b", "2", 2, 6, 3, 0)));
    assert_eq!(db.get("c"), Some(kv("c", "1", 3, 3, 1, 0)));
    db
}

#[test]
fn sort_order_and_target_order_the_results() {
    let db = sorting_fixture();
    use SortOrder::{Ascend, Descend, None as Unsorted};
    use SortTarget::{Create, Key, Mod, Value, Version};
    let cases: &[(SortOrder, SortTarget, [&str; 3])] = &[
        (Unsorted, Key, ["a", "b", "c"]),
        (Ascend, Key, ["a", "b", "c"]),
        (Descend, Key, ["c", "b", "a"]),
        // No order with a non-key target means ascending, as in etcd.
        (Unsorted, Version, ["c", "a", "b"]),
        (Ascend, Version, ["c", "a", "b"]),
        (Descend, Version, ["b", "a", "c"]),
        (Unsorted, Create, ["b", "c", "a"]),
        (Ascend, Create, ["b", "c", "a"]),
        (Descend, Create, ["a", "c", "b"]),
        (Ascend, Mod, ["c", "b", "a"]),
        (Descend, Mod, ["a", "b", "c"]),
        (Unsorted, Value, ["c", "b", "a"]),
        (Ascend, Value, ["c", "b", "a"]),
        (Descend, Value, ["a", "b", "c"]),
    ];
    for (order, target, want) in cases {
        let req = RangeRequest {
            sort_order: *order,
            sort_target: *target,
            ..range_req("a", "d")
        };
        let r = db.range(&req).unwrap();
        assert_eq!(keys(&r.kvs), *want, "{order:?} by {target:?}");
        assert_eq!(r.count, 3);
        // Sorted with a limit: the first one of the sorted order.
        let limited = db.range(&RangeRequest { limit: 1, ..req }).unwrap();
        if *order != Unsorted {
            assert_eq!(
                keys(&limited.kvs),
                [want[0]],
                "{order:?} by {target:?} limit 1"
            );
            assert!(limited.more);
        }
    }
}

#[test]
fn keys_only_omits_values_and_count_only_omits_every_kv() {
    let db = sorting_fixture();
    let r = db
        .range(&RangeRequest {
            keys_only: true,
            ..range_req("a", "d")
        })
        .unwrap();
    assert_eq!(keys(&r.kvs), ["a", "b", "c"]);
    assert!(r.kvs.iter().all(|kv| kv.value.is_empty()));
    // Everything but the value is still there.
    assert_eq!(r.kvs[0], kv("a", "", 4, 9, 2, 0));

    for limit in [0, 1] {
        let r = db
            .range(&RangeRequest {
                count_only: true,
                limit,
                ..range_req("a", "d")
            })
            .unwrap();
        assert!(r.kvs.is_empty());
        assert_eq!(r.count, 3);
        assert!(!r.more);
    }
}

#[test]
fn min_and_max_mod_and_create_revision_filter_the_results_but_not_the_count() {
    let db = sorting_fixture();
    // (min_mod, max_mod, min_create, max_create, keys)
    let cases: &[(i64, i64, i64, i64, &[&str])] = &[
        (0, 0, 0, 0, &["a", "b", "c"]),
        (6, 0, 0, 0, &["a", "b"]),
        (7, 0, 0, 0, &["a"]),
        (0, 6, 0, 0, &["b", "c"]),
        (0, 2, 0, 0, &[]),
        (0, 0, 3, 0, &["a", "c"]),
        (0, 0, 0, 3, &["b", "c"]),
        (0, 0, 3, 3, &["c"]),
        (4, 8, 0, 0, &["b"]),
        (3, 9, 2, 4, &["a", "b", "c"]),
        (6, 0, 0, 3, &["b"]),
    ];
    for (min_mod, max_mod, min_create, max_create, want) in cases {
        let req = RangeRequest {
            min_mod_revision: *min_mod,
            max_mod_revision: *max_mod,
            min_create_revision: *min_create,
            max_create_revision: *max_create,
            ..range_req("a", "d")
        };
        let r = db.range(&req).unwrap();
        assert_eq!(keys(&r.kvs), *want, "{req:?}");
        assert_eq!(r.count, 3, "count ignores filters: {req:?}");
    }
    // A filter with a limit: `more` says the filtered result was truncated.
    let req = RangeRequest {
        min_create_revision: 3,
        limit: 1,
        ..range_req("a", "d")
    };
    let r = db.range(&req).unwrap();
    assert_eq!(
        (keys(&r.kvs), r.more, r.count),
        (vec!["a".to_string()], true, 3)
    );
}

// ---------------------------------------------------------------------------------------
// Put
// ---------------------------------------------------------------------------------------

#[test]
fn put_returns_the_previous_kv_only_when_asked() {
    let db = db();
    let with_prev = |key: &str, value: &str| PutRequest {
        prev_kv: true,
        ..put_req(key, value)
    };
    assert_eq!(db.try_put(with_prev("a", "1")).unwrap().prev_kv, None);
    assert_eq!(db.put("a", "2").prev_kv, None);
    let r = db.try_put(with_prev("a", "3")).unwrap();
    assert_eq!(r.prev_kv, Some(kv("a", "2", 2, 3, 2, 0)));
    assert_eq!(r.revision, 4);
}

#[test]
fn ignore_value_keeps_the_value_and_ignore_lease_keeps_the_lease() {
    let db = db();
    db.grant(7, 60).unwrap();
    db.put_lease("a", "v1", 7); // 2
    db.try_put(PutRequest {
        ignore_value: true,
        ..put_req("a", "")
    })
    .unwrap(); // 3: value kept, lease dropped (lease 0 given)
    assert_eq!(db.get("a"), Some(kv("a", "v1", 2, 3, 2, 0)));
    db.put_lease("a", "v2", 7); // 4
    db.try_put(PutRequest {
        ignore_lease: true,
        ..put_req("a", "v3")
    })
    .unwrap(); // 5: lease kept
    assert_eq!(db.get("a"), Some(kv("a", "v3", 2, 5, 4, 7)));
    db.try_put(PutRequest {
        ignore_value: true,
        ignore_lease: true,
        ..put_req("a", "")
    })
    .unwrap(); // 6: both kept
    assert_eq!(db.get("a"), Some(kv("a", "v3", 2, 6, 5, 7)));
    let info = db.engine.lease(7, true).unwrap().unwrap();
    assert_eq!(info.keys, vec![b("a")]);
}

#[test]
fn invalid_puts_fail_with_etcds_error_and_take_no_revision() {
    let db = db();
    db.put("present", "v"); // 2
    let cases: Vec<(PutRequest, Error)> = vec![
        (
            PutRequest {
                ignore_value: true,
                ..put_req("missing", "")
            },
            Error::KeyNotFound,
        ),
        (
            PutRequest {
                ignore_lease: true,
                ..put_req("missing", "v")
            },
            Error::KeyNotFound,
        ),
        (
            PutRequest {
                ignore_value: true,
                ..put_req("present", "v")
            },
            Error::ValueProvided,
        ),
        (
            PutRequest {
                ignore_lease: true,
                lease: 5,
                ..put_req("present", "v")
            },
            Error::LeaseProvided,
        ),
        (
            PutRequest {
                lease: 5,
                ..put_req("present", "v")
            },
            Error::LeaseNotFound { id: 5 },
        ),
    ];
    for (req, want) in cases {
        let got = db.try_put(req.clone());
        assert!(same_error(&got, &want), "{req:?}: {got:?}");
        // The same put inside a txn fails the whole txn the same way.
        let got = db.txn(txn(vec![], vec![RequestOp::Put(req.clone())], vec![]));
        assert!(same_error(&got, &want), "txn {req:?}: {got:?}");
        assert_eq!(db.rev(), 2, "{req:?} took a revision");
    }
    assert_eq!(db.get("missing"), None);
}

// ---------------------------------------------------------------------------------------
// DeleteRange
// ---------------------------------------------------------------------------------------

#[test]
fn delete_range_deletes_in_one_revision_and_returns_prev_kvs_when_asked() {
    let db = db();
    for k in ["a", "b", "c", "d"] {
        db.put(k, k); // 2..=5
    }
    let r = db.delete(DeleteRangeRequest {
        prev_kv: true,
        ..del_req("b", "d")
    });
    assert_eq!((r.revision, r.deleted), (6, 2));
    assert_eq!(
        r.prev_kvs,
        vec![kv("b", "b", 3, 3, 1, 0), kv("c", "c", 4, 4, 1, 0)]
    );
    let r = db.delete(del_req("a", "\0"));
    assert_eq!((r.revision, r.deleted), (7, 2));
    assert!(r.prev_kvs.is_empty(), "prev_kvs only when asked");
    assert_eq!(db.all_at(0).unwrap(), vec![]);
    let events = db.events(6);
    assert_eq!(events.len(), 2);
    assert!(
        events
            .iter()
            .flat_map(|r| &r.events)
            .all(|e| e.kind == EventType::Delete)
    );
}

#[test]
fn deleting_nothing_takes_no_revision() {
    let db = db();
    db.put("a", "1"); // 2
    for req in [
        del_req("b", ""),
        del_req("b", "z"),
        del_req("b", "a"),
        del_req("b", "\0"),
    ] {
        let r = db.delete(req.clone());
        assert_eq!((r.revision, r.deleted), (2, 0), "{req:?}");
    }
    // A txn whose only write deletes nothing takes none either.
    let t = db.txn(txn(vec![], vec![del_op("x", "")], vec![])).unwrap();
    assert_eq!(t.revision, 2);
    assert_eq!(db.rev(), 2);
    assert_eq!(db.events(0).len(), 1);
}

// ---------------------------------------------------------------------------------------
// Txn
// ---------------------------------------------------------------------------------------

#[test]
fn compares_evaluate_every_target_and_result() {
    use CompareResult::{Equal, Greater, Less, NotEqual};
    use CompareTarget::{Create, Lease, Mod, Value, Version};
    let db = db();
    db.grant(7, 60).unwrap();
    db.put("k", "v1"); // 2
    db.put_lease("k", "v2", 7); // 3: version 2, create 2, mod 3, lease 7
    let cases: Vec<(&str, CompareResult, CompareTarget, bool)> = vec![
        ("k", Equal, Version(2), true),
        ("k", NotEqual, Version(2), false),
        ("k", Greater, Version(1), true),
        ("k", Less, Version(3), true),
        ("k", Less, Version(2), false),
        ("k", Equal, Create(2), true),
        ("k", Greater, Create(2), false),
        ("k", Equal, Mod(3), true),
        ("k", Equal, Mod(0), false),
        ("k", Greater, Mod(0), true),
        ("k", Less, Mod(3), false),
        ("k", Equal, Value(b("v2")), true),
        ("k", Less, Value(b("v3")), true),
        ("k", Greater, Value(b("v1")), true),
        ("k", Greater, Value(b("v2\0")), false),
        ("k", NotEqual, Value(b("v2")), false),
        ("k", Equal, Lease(7), true),
        ("k", NotEqual, Lease(0), true),
        // A missing key compares as zero on every target but VALUE ...
        ("missing", Equal, Version(0), true),
        ("missing", Equal, Create(0), true),
        ("missing", Equal, Mod(0), true),
        ("missing", Less, Mod(1), true),
        ("missing", Greater, Mod(0), false),
        ("missing", Equal, Lease(0), true),
        // ... and VALUE on a missing key is always false.
        ("missing", Equal, Value(vec![]), false),
        ("missing", NotEqual, Value(b("x")), false),
        ("missing", Less, Value(b("x")), false),
        ("missing", Greater, Value(vec![]), false),
    ];
    for (key, result, target, want) in cases {
        let c = cmp(key, result, target.clone());
        let t = db
            .txn(txn(vec![c], vec![range_op("k", "")], vec![]))
            .unwrap();
        assert_eq!(t.succeeded, want, "{key} {result:?} {target:?}");
        assert_eq!(t.responses.len(), usize::from(want));
    }
    assert_eq!(db.rev(), 3);
}

#[test]
fn a_compare_over_a_range_holds_only_if_every_key_matches() {
    use CompareResult::Equal;
    let db = db();
    db.put("r1", "x");
    db.put("r2", "x");
    db.put("s", "y");
    let over = |target: CompareTarget, end: &str| Compare {
        range_end: b(end),
        ..cmp("r", Equal, target)
    };
    let check = |c: Compare| db.txn(txn(vec![c], vec![], vec![])).unwrap().succeeded;
    assert!(check(over(CompareTarget::Value(b("x")), "s")));
    assert!(!check(over(CompareTarget::Value(b("x")), "\0")));
    assert!(check(over(CompareTarget::Version(1), "\0")));
    // An empty range behaves like a missing key.
    assert!(check(over(CompareTarget::Mod(0), "r0")));
    assert!(!check(over(CompareTarget::Value(vec![]), "r0")));
    db.put("r2", "y");
    assert!(!check(over(CompareTarget::Value(b("x")), "s")));
}

#[test]
fn a_txn_takes_one_revision_and_runs_the_branch_its_compares_choose() {
    let db = db();
    db.put("a", "1"); // 2
    let absent = |k: &str| cmp(k, CompareResult::Equal, CompareTarget::Mod(0));
    // Success branch: three writes, one revision.
    let t = db
        .txn(txn(
            vec![absent("b")],
            vec![put_op("b", "1"), put_op("c", "1"), del_op("a", "")],
            vec![put_op("failure", "1")],
        ))
        .unwrap();
    assert!(t.succeeded);
    assert_eq!(t.revision, 3);
    assert_eq!(keys(&db.all_at(0).unwrap()), ["b", "c"]);
    let events = db.events(3);
    assert_eq!(events.len(), 1);
    let kinds: Vec<(EventType, String)> = events[0]
        .events
        .iter()
        .map(|e| (e.kind, String::from_utf8_lossy(&e.kv.key).into_owned()))
        .collect();
    assert_eq!(
        kinds,
        [
            (EventType::Put, "b".into()),
            (EventType::Put, "c".into()),
            (EventType::Delete, "a".into())
        ]
    );
    // Failure branch.
    let t = db
        .txn(txn(
            vec![absent("b")],
            vec![put_op("x", "1")],
            vec![put_op("b", "2")],
        ))
        .unwrap();
    assert!(!t.succeeded);
    assert_eq!(t.revision, 4);
    assert_eq!(db.get("b").unwrap().value, b("2"));
    assert_eq!(db.get("x"), None);
    match &t.responses[..] {
        [ResponseOp::Put(p)] => assert_eq!(p.revision, 4),
        other => panic!("{other:?}"),
    }
}

#[test]
fn read_only_and_empty_txns_take_no_revision() {
    let db = db();
    db.put("a", "1"); // 2
    let cases = [
        txn(vec![], vec![], vec![]),
        txn(vec![], vec![range_op("a", "")], vec![]),
        // A failing compare whose failure branch is empty writes nothing.
        txn(
            vec![cmp("a", CompareResult::Equal, CompareTarget::Mod(0))],
            vec![put_op("a", "2")],
            vec![],
        ),
        txn(
            vec![],
            vec![RequestOp::Txn(txn(vec![], vec![range_op("a", "")], vec![]))],
            vec![],
        ),
    ];
    for req in cases {
        let t = db.txn(req.clone()).unwrap();
        assert_eq!(t.revision, 2, "{req:?}");
        assert_eq!(db.rev(), 2, "{req:?}");
    }
}

#[test]
fn nested_txns_choose_branches_on_the_state_before_the_txn_and_share_its_revision() {
    let db = db();
    let absent = |k: &str| cmp(k, CompareResult::Equal, CompareTarget::Mod(0));
    let req = txn(
        vec![absent("a")],
        vec![
            put_op("a", "1"),
            // Evaluated before the outer put ran: "a" is still absent here.
            RequestOp::Txn(txn(
                vec![absent("a")],
                vec![put_op("b", "1")],
                vec![put_op("c", "1")],
            )),
            RequestOp::Txn(txn(
                vec![cmp("a", CompareResult::Greater, CompareTarget::Mod(0))],
                vec![put_op("d", "1")],
                vec![range_op("a", "")],
            )),
        ],
        vec![],
    );
    let t = db.txn(req).unwrap();
    assert!(t.succeeded);
    assert_eq!(t.revision, 2);
    assert_eq!(keys(&db.all_at(0).unwrap()), ["a", "b"]);
    match &t.responses[..] {
        [
            ResponseOp::Put(_),
            ResponseOp::Txn(first),
            ResponseOp::Txn(second),
        ] => {
            assert!(first.succeeded);
            assert!(!second.succeeded);
            // The range in the nested failure branch sees the outer put.
            match &second.responses[..] {
                [ResponseOp::Range(r)] => assert_eq!(r.kvs, vec![kv("a", "1", 2, 2, 1, 0)]),
                other => panic!("{other:?}"),
            }
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_range_inside_a_txn_sees_the_txns_earlier_writes() {
    let db = db();
    db.put("a", "old"); // 2
    db.put("b", "old"); // 3
    let t = db
        .txn(txn(
            vec![],
            vec![
                range_op("a", ""),
                put_op("a", "new"),
                del_op("b", ""),
                range_op("a", "\0"),
            ],
            vec![],
        ))
        .unwrap();
    assert_eq!(t.revision, 4);
    match &t.responses[..] {
        [
            ResponseOp::Range(before),
            ResponseOp::Put(_),
            ResponseOp::DeleteRange(d),
            ResponseOp::Range(after),
        ] => {
            assert_eq!(before.kvs, vec![kv("a", "old", 2, 2, 1, 0)]);
            assert_eq!(d.deleted, 1);
            assert_eq!(after.kvs, vec![kv("a", "new", 2, 4, 2, 0)]);
            assert_eq!(after.count, 1, "the deleted key is gone already");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(keys(&db.all_at(0).unwrap()), ["a"]);
}

#[test]
fn a_txn_branch_or_compare_list_may_hold_at_most_128_ops() {
    let db = db();
    assert_eq!(MAX_TXN_OPS, 128);
    let puts = |n: usize| {
        (0..n)
            .map(|i| put_op(&format!("k{i:03}"), "v"))
            .collect::<Vec<_>>()
    };
    let cmps = |n: usize| {
        (0..n)
            .map(|i| {
                cmp(
                    &format!("k{i:03}"),
                    CompareResult::Equal,
                    CompareTarget::Mod(0),
                )
            })
            .collect::<Vec<_>>()
    };
    let too_many = [
        txn(vec![], puts(129), vec![]),
        txn(vec![], vec![], puts(129)),
        txn(cmps(129), vec![], vec![]),
        txn(
            vec![],
            vec![RequestOp::Txn(txn(vec![], puts(129), vec![]))],
            vec![],
        ),
    ];
    for req in too_many {
        let got = db.txn(req);
        assert!(
            same_error(&got, &Error::TooManyTxnOps { limit: 128 }),
            "{got:?}"
        );
    }
    assert_eq!(db.rev(), 1);
    let t = db.txn(txn(cmps(128), puts(128), vec![])).unwrap();
    assert!(t.succeeded);
    assert_eq!(t.revision, 2);
    assert_eq!(db.range(&range_req("k", "l")).unwrap().count, 128);
    assert_eq!(db.events(2)[0].events.len(), 128);
}

#[test]
fn overlapping_writes_in_one_txn_branch_are_duplicate_keys() {
    let db = db();
    db.put("a", "1");
    let nested = |success, failure| RequestOp::Txn(txn(vec![], success, failure));
    let bad = [
        vec![put_op("a", "1"), put_op("a", "2")],
        vec![del_op("a", "c"), put_op("b", "1")],
        vec![put_op("b", "1"), del_op("a", "\0")],
        vec![put_op("a", "1"), nested(vec![put_op("a", "2")], vec![])],
        vec![del_op("a", ""), nested(vec![], vec![put_op("a", "2")])],
        vec![
            nested(vec![del_op("a", "")], vec![]),
            nested(vec![put_op("a", "2")], vec![]),
        ],
    ];
    for ops in bad {
        for req in [
            txn(vec![], ops.clone(), vec![]),
            txn(vec![], vec![], ops.clone()),
        ] {
            let got = db.txn(req);
            assert!(matches!(got, Err(Error::DuplicateKey)), "{ops:?}: {got:?}");
        }
    }
    assert_eq!(db.rev(), 2);
    let good = [
        txn(vec![], vec![put_op("a", "1")], vec![put_op("a", "2")]),
        txn(vec![], vec![del_op("a", ""), del_op("a", "")], vec![]),
        txn(
            vec![],
            vec![nested(vec![put_op("x", "1")], vec![put_op("x", "2")])],
            vec![],
        ),
        txn(vec![], vec![range_op("a", ""), put_op("a", "3")], vec![]),
    ];
    for req in good {
        assert!(db.txn(req.clone()).is_ok(), "{req:?}");
    }
}

// ---------------------------------------------------------------------------------------
// Leases
// ---------------------------------------------------------------------------------------

#[test]
fn granting_a_lease_takes_no_revision_and_an_existing_id_is_refused() {
    let db = db();
    match db.grant(5, 30).unwrap() {
        CommandResponse::LeaseGrant { id, ttl, revision } => {
            assert_eq!((id, ttl, revision), (5, 30, 1));
        }
        other => panic!("{other:?}"),
    }
    assert!(same_error(&db.grant(5, 10), &Error::LeaseExists { id: 5 }));
    let too_long = db.grant(6, MAX_LEASE_TTL + 1);
    assert!(same_error(
        &too_long,
        &Error::LeaseTtlTooLarge {
            ttl: MAX_LEASE_TTL + 1
        }
    ));
    assert!(db.grant(6, MAX_LEASE_TTL).is_ok());
    assert_eq!(
        db.engine.leases().unwrap(),
        vec![(5, 30), (6, MAX_LEASE_TTL)]
    );
    assert_eq!(db.rev(), 1);
    let info = db.engine.lease(5, true).unwrap().unwrap();
    assert_eq!((info.id, info.granted_ttl, info.keys.len()), (5, 30, 0));
    assert_eq!(db.engine.lease(99, true).unwrap(), None);
}

#[test]
fn revoking_a_lease_deletes_its_keys_in_one_revision() {
    let db = db();
    db.grant(5, 30).unwrap();
    db.grant(6, 30).unwrap();
    db.put_lease("a", "1", 5); // 2
    db.put_lease("b", "1", 5); // 3
    db.put_lease("c", "1", 6); // 4
    db.put("d", "1"); // 5
    assert_eq!(
        db.engine.lease(5, true).unwrap().unwrap().keys,
        vec![b("a"), b("b")]
    );
    match db.revoke(5).unwrap() {
        CommandResponse::LeaseRevoke { revision } => assert_eq!(revision, 6),
        other => panic!("{other:?}"),
    }
    assert_eq!(keys(&db.all_at(0).unwrap()), ["c", "d"]);
    let events = db.events(6);
    assert_eq!(events.len(), 1);
    let deleted: Vec<&[u8]> = events[0]
        .events
        .iter()
        .map(|e| e.kv.key.as_slice())
        .collect();
    assert_eq!(deleted, [b"a", b"b"]);
    assert!(events[0].events.iter().all(|e| e.kind == EventType::Delete));
    assert_eq!(db.engine.lease(5, false).unwrap(), None);
    assert_eq!(db.engine.leases().unwrap(), vec![(6, 30)]);
    assert!(same_error(&db.revoke(5), &Error::LeaseNotFound { id: 5 }));
    // A lease without keys is revoked without a revision.
    db.grant(7, 30).unwrap();
    match db.revoke(7).unwrap() {
        CommandResponse::LeaseRevoke { revision } => assert_eq!(revision, 6),
        other => panic!("{other:?}"),
    }
    assert_eq!(db.rev(), 6);
}

#[test]
fn a_key_follows_its_newest_lease_and_leaves_it_when_deleted() {
    let db = db();
    db.grant(1, 30).unwrap();
    db.grant(2, 30).unwrap();
    db.put_lease("a", "1", 1);
    db.put_lease("a", "2", 2);
    let keys_of = |id| db.engine.lease(id, true).unwrap().unwrap().keys;
    assert!(keys_of(1).is_empty());
    assert_eq!(keys_of(2), vec![b("a")]);
    // Revoking the old lease leaves the key alone and takes no revision.
    let before = db.rev();
    db.revoke(1).unwrap();
    assert_eq!(db.rev(), before);
    assert_eq!(db.get("a").unwrap().lease, 2);
    // A put without a lease detaches the key.
    db.put("a", "3");
    assert!(keys_of(2).is_empty());
    db.put_lease("b", "1", 2);
    db.delete(del_req("b", ""));
    assert!(keys_of(2).is_empty());
    let before = db.rev();
    db.revoke(2).unwrap();
    assert_eq!(db.rev(), before);
    assert_eq!(db.get("a").unwrap().value, b("3"));
}

#[test]
fn alarms_are_raised_and_cleared_without_a_revision() {
    let db = db();
    let alarm = |activate, member, alarm| Command::Alarm {
        activate,
        member,
        alarm,
    };
    db.apply(alarm(true, 1, AlarmType::NoSpace)).unwrap();
    match db.apply(alarm(true, 2, AlarmType::Corrupt)).unwrap() {
        CommandResponse::Alarm { alarms, revision } => {
            assert_eq!(
                alarms,
                vec![(1, AlarmType::NoSpace), (2, AlarmType::Corrupt)]
            );
            assert_eq!(revision, 1);
        }
        other => panic!("{other:?}"),
    }
    db.apply(alarm(false, 1, AlarmType::NoSpace)).unwrap();
    assert_eq!(db.engine.alarms().unwrap(), vec![(2, AlarmType::Corrupt)]);
    assert_eq!(db.rev(), 1);
}

// ---------------------------------------------------------------------------------------
// Compaction and history
// ---------------------------------------------------------------------------------------

#[test]
fn compaction_keeps_the_newest_version_of_live_keys_and_forgets_deleted_ones() {
    let db = db();
    db.put("a", "1"); // 2
    db.put("a", "2"); // 3
    db.put("b", "1"); // 4
    db.delete(del_req("b", "")); // 5
    db.put("c", "1"); // 6
    db.put("a", "3"); // 7
    let before = db.all_at(6).unwrap();
    match db.compact(6).unwrap() {
        CommandResponse::Compact { revision } => assert_eq!(revision, 7),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        (db.rev(), db.compacted()),
        (7, 6),
        "compaction takes no revision"
    );
    assert_eq!(db.all_at(6).unwrap(), before);
    assert_eq!(
        db.all_at(6).unwrap(),
        vec![kv("a", "2", 2, 3, 2, 0), kv("c", "1", 6, 6, 1, 0)]
    );
    assert_eq!(
        db.all_at(0).unwrap(),
        vec![kv("a", "3", 2, 7, 3, 0), kv("c", "1", 6, 6, 1, 0)]
    );
    assert_eq!(db.get_at("b", 6).unwrap(), None);
    // Versions and creation revisions survive a second compaction too.
    db.put("a", "4"); // 8
    db.compact(8).unwrap();
    assert_eq!(db.get("a"), Some(kv("a", "4", 2, 8, 4, 0)));
    assert_eq!(db.get("c"), Some(kv("c", "1", 6, 6, 1, 0)));
    // Compaction keeps only what reads at or after it can see.
    let (hash_before, _, _) = db.engine.hash_kv(0).unwrap();
    db.compact(8).unwrap_err();
    assert_eq!(db.engine.hash_kv(0).unwrap().0, hash_before);
}

#[test]
fn compacting_at_or_below_the_compacted_revision_or_into_the_future_fails() {
    let db = db();
    for v in ["1", "2", "3"] {
        db.put("a", v); // 2..=4
    }
    db.compact(3).unwrap();
    let cases = [
        (
            3,
            Error::Compacted {
                requested: 3,
                compacted: 3,
            },
        ),
        (
            2,
            Error::Compacted {
                requested: 2,
                compacted: 3,
            },
        ),
        (
            0,
            Error::Compacted {
                requested: 0,
                compacted: 3,
            },
        ),
        (
            5,
            Error::FutureRevision {
                requested: 5,
                current: 4,
            },
        ),
    ];
    for (rev, want) in cases {
        let got = db.compact(rev);
        assert!(same_error(&got, &want), "compact {rev}: {got:?}");
    }
    assert_eq!((db.rev(), db.compacted()), (4, 3));
    db.compact(4).unwrap();
    assert_eq!(db.compacted(), 4);
}

#[test]
fn a_key_deleted_exactly_at_the_compacted_revision_stays_deleted_and_watchable() {
    let db = db();
    db.put("a", "1"); // 2
    db.delete(del_req("a", "")); // 3
    db.compact(3).unwrap();
    assert_eq!(db.get_at("a", 3).unwrap(), None);
    let events = db.events(3);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].events[0].kind, EventType::Delete);
    db.put("b", "1"); // 4
    db.compact(4).unwrap();
    assert_eq!(db.get("a"), None);
    assert_eq!(keys(&db.all_at(4).unwrap()), ["b"]);
}

#[test]
fn read_events_below_the_compacted_revision_fails_and_from_exactly_it_works() {
    let db = db();
    for v in ["1", "2", "3", "4"] {
        db.put("a", v); // 2..=5
    }
    db.compact(4).unwrap();
    for from in [0, 1, 3] {
        let got = db.engine.read_events(from, 5, usize::MAX);
        assert!(
            same_error(
                &got,
                &Error::Compacted {
                    requested: from,
                    compacted: 4
                }
            ),
            "{from}"
        );
    }
    let revs: Vec<i64> = db.events(4).iter().map(|r| r.revision).collect();
    assert_eq!(revs, [4, 5]);
    // The event after the compacted revision still carries its previous version.
    let ev5 = &db.events(5)[0].events[0];
    assert_eq!(ev5.prev_kv, Some(kv("a", "3", 2, 4, 3, 0)));
    // Reading from the future or an empty window is empty, not an error.
    assert!(db.engine.read_events(6, 10, usize::MAX).unwrap().is_empty());
    assert!(db.engine.read_events(5, 4, usize::MAX).unwrap().is_empty());
}

#[test]
fn read_events_groups_each_revision_and_carries_prev_kv() {
    let db = db();
    db.put("a", "1"); // 2
    db.put("a", "2"); // 3
    db.txn(txn(vec![], vec![put_op("b", "1"), del_op("a", "")], vec![]))
        .unwrap(); // 4
    db.put("a", "3"); // 5
    let want = vec![
        RevisionEvents {
            revision: 2,
            events: vec![Event {
                kind: EventType::Put,
                kv: kv("a", "1", 2, 2, 1, 0),
                prev_kv: None,
            }],
        },
        RevisionEvents {
            revision: 3,
            events: vec![Event {
                kind: EventType::Put,
                kv: kv("a", "2", 2, 3, 2, 0),
                prev_kv: Some(kv("a", "1", 2, 2, 1, 0)),
            }],
        },
        RevisionEvents {
            revision: 4,
            events: vec![
                Event {
                    kind: EventType::Put,
                    kv: kv("b", "1", 4, 4, 1, 0),
                    prev_kv: None,
                },
                Event {
                    kind: EventType::Delete,
                    kv: KeyValue {
                        key: b("a"),
                        mod_revision: 4,
                        ..KeyValue::default()
                    },
                    prev_kv: Some(kv("a", "2", 2, 3, 2, 0)),
                },
            ],
        },
        RevisionEvents {
            revision: 5,
            events: vec![Event {
                kind: EventType::Put,
                kv: kv("a", "3", 5, 5, 1, 0),
                // The previous version is a deletion: nothing to report.
                prev_kv: None,
            }],
        },
    ];
    assert_eq!(db.events(0), want);
    assert_eq!(db.engine.read_events(3, 4, usize::MAX).unwrap(), want[1..3]);
}

#[test]
fn history_events_equal_the_events_an_apply_batch_produced() {
    let db = db();
    db.grant(3, 60).unwrap();
    let cmds = [
        Command::Put(put_req("a", "1")),
        Command::Put(PutRequest {
            lease: 3,
            ..put_req("b", "1")
        }),
        Command::Txn(txn(
            vec![],
            vec![put_op("c", "1"), put_op("a", "2")],
            vec![],
        )),
        Command::DeleteRange(del_req("a", "c")),
        // "b" is gone already: the revoke deletes nothing and takes no revision.
        Command::LeaseRevoke { id: 3 },
        Command::Put(put_req("a", "3")),
    ];
    let refs: Vec<&Command> = cmds.iter().collect();
    let batch = db.engine.apply_batch(&refs, Durability::None).unwrap();
    assert!(batch.responses.iter().all(Result::is_ok));
    assert_eq!(batch.revision, 6);
    assert_eq!(db.events(0), batch.events);
}

#[test]
fn read_events_stops_at_a_revision_boundary_once_enough_events_are_collected() {
    let db = db();
    db.put("a", "1"); // 2
    db.txn(txn(
        vec![],
        vec![put_op("b", "1"), put_op("c", "1"), put_op("d", "1")],
        vec![],
    ))
    .unwrap(); // 3
    db.put("e", "1"); // 4
    let revs = |from, max| -> Vec<(i64, usize)> {
        db.engine
            .read_events(from, 4, max)
            .unwrap()
            .iter()
            .map(|r| (r.revision, r.events.len()))
            .collect()
    };
    assert_eq!(revs(2, 1), [(2, 1)]);
    assert_eq!(revs(2, 2), [(2, 1), (3, 3)], "a revision is never split");
    assert_eq!(revs(3, 1), [(3, 3)]);
    assert_eq!(revs(3, 4), [(3, 3), (4, 1)]);
    assert_eq!(revs(2, 0), [(2, 1)], "at least one revision");
    assert_eq!(db.engine.read_events(2, 3, usize::MAX).unwrap().len(), 2);
}

// ---------------------------------------------------------------------------------------
// Hashes and snapshots
// ---------------------------------------------------------------------------------------

fn mixed_history() -> Vec<Command> {
    vec![
        Command::LeaseGrant { id: 11, ttl: 100 },
        Command::Put(put_req("a", "1")),
        Command::Put(PutRequest {
            lease: 11,
            ..put_req("b", "1")
        }),
        Command::Put(put_req("a", "2")),
        Command::Txn(txn(vec![], vec![put_op("c", "1"), del_op("a", "")], vec![])),
        Command::Compact { revision: 4 },
        Command::Put(put_req("d", "1")),
        Command::Alarm {
            activate: true,
            member: 1,
            alarm: AlarmType::Corrupt,
        },
        Command::Put(put_req("a", "3")),
    ]
}

fn feed(db: &Db, cmds: &[Command]) {
    for cmd in cmds {
        db.apply(cmd.clone()).expect("command applies");
    }
}

#[test]
fn engines_fed_the_same_commands_have_equal_hashes() {
    let one = db();
    let two = db();
    let cmds = mixed_history();
    feed(&one, &cmds);
    // The second engine gets the same commands in a single batch.
    let refs: Vec<&Command> = cmds.iter().collect();
    two.engine.apply_batch(&refs, Durability::None).unwrap();
    for rev in [0, 4, 5, 7] {
        assert_eq!(
            one.engine.hash_kv(rev).unwrap(),
            two.engine.hash_kv(rev).unwrap(),
            "{rev}"
        );
    }
    assert_eq!(one.engine.hash().unwrap(), two.engine.hash().unwrap());
    let (_, compacted, current) = one.engine.hash_kv(0).unwrap();
    assert_eq!((compacted, current), (4, 7));
    assert!(same_error(
        &one.engine.hash_kv(3),
        &Error::Compacted {
            requested: 3,
            compacted: 4
        }
    ));
    assert_ne!(
        one.engine.hash_kv(5).unwrap().0,
        one.engine.hash_kv(6).unwrap().0
    );
    two.put("e", "1");
    assert_ne!(
        one.engine.hash_kv(0).unwrap().0,
        two.engine.hash_kv(0).unwrap().0
    );
    assert_ne!(one.engine.hash().unwrap(), two.engine.hash().unwrap());
}

#[test]
fn a_snapshot_restored_into_a_fresh_engine_reproduces_the_state() {
    let src = db();
    feed(&src, &mixed_history());
    let mut snap = Vec::new();
    let written = src.engine.write_snapshot(&mut snap).unwrap();
    assert_eq!(written, snap.len() as u64);

    let dst = db();
    dst.put("junk", "replaced by the restore");
    dst.engine.restore_snapshot(&mut snap.as_slice()).unwrap();
    assert_eq!(
        dst.engine.revisions().unwrap(),
        src.engine.revisions().unwrap()
    );
    assert_eq!(
        dst.engine.hash_kv(0).unwrap(),
        src.engine.hash_kv(0).unwrap()
    );
    assert_eq!(dst.engine.hash().unwrap(), src.engine.hash().unwrap());
    for rev in [0, 4, 5, 6, 7] {
        assert_eq!(
            dst.all_at(rev).unwrap(),
            src.all_at(rev).unwrap(),
            "at {rev}"
        );
    }
    assert_eq!(dst.events(4), src.events(4));
    assert_eq!(dst.engine.leases().unwrap(), src.engine.leases().unwrap());
    assert_eq!(
        dst.engine.lease(11, true).unwrap(),
        src.engine.lease(11, true).unwrap()
    );
    assert_eq!(dst.engine.alarms().unwrap(), src.engine.alarms().unwrap());
    // Both continue identically.
    for db in [&src, &dst] {
        db.put("after", "1");
        db.revoke(11).unwrap();
    }
    assert_eq!(dst.engine.hash().unwrap(), src.engine.hash().unwrap());
}

#[test]
fn a_damaged_snapshot_is_refused_and_leaves_the_state_intact() {
    let src = db();
    feed(&src, &mixed_history());
    let mut snap = Vec::new();
    src.engine.write_snapshot(&mut snap).unwrap();

    let dst = db();
    dst.put("keep", "me");
    let hash = dst.engine.hash().unwrap();
    let mut bad_magic = snap.clone();
    bad_magic[0] ^= 0xff;
    let truncated = snap[..snap.len() - 3].to_vec();
    let mut garbled = snap.clone();
    let n = garbled.len();
    garbled[n / 2..].iter_mut().for_each(|b| *b = 0xff);
    for damaged in [bad_magic, truncated, garbled, Vec::new()] {
        assert!(
            dst.engine
                .restore_snapshot(&mut damaged.as_slice())
                .is_err()
        );
        assert_eq!(dst.engine.hash().unwrap(), hash);
    }
    assert_eq!(dst.get("keep").unwrap().value, b("me"));
}

#[test]
fn defragmenting_keeps_every_version() {
    let db = db();
    for i in 0..200 {
        db.put(&format!("k{}", i % 7), &"x".repeat(i));
    }
    db.compact(150).unwrap();
    let hash = db.engine.hash().unwrap();
    db.engine.defragment().unwrap();
    assert_eq!(db.engine.hash().unwrap(), hash);
    let (total, in_use) = db.engine.size().unwrap();
    assert!(in_use <= total);
    assert!(db.dir.path().join("db").exists());
}
