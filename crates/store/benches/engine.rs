//! Micro-benchmarks of the engine's hot paths: applying a batch of puts, point and prefix
//! reads, and reading history for watchers. Run with `cargo bench -p stead-store`.

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use redb::Durability;
use stead_store::{Command, Engine, EngineOptions, PutRequest, RangeRequest};

fn put(i: u64) -> Command {
    Command::Put(PutRequest {
        key: format!("bench/{:08}", i % 10_000).into_bytes(),
        value: vec![b'v'; 256],
        ..Default::default()
    })
}

fn engine_with(keys: u64) -> (tempfile::TempDir, Engine) {
    let dir = tempfile::tempdir().expect("tempdir");
    let engine = Engine::open(&dir.path().join("db"), &EngineOptions::default()).expect("open");
    let cmds: Vec<Command> = (0..keys).map(put).collect();
    for chunk in cmds.chunks(1000) {
        let refs: Vec<&Command> = chunk.iter().collect();
        engine.apply_batch(&refs, Durability::None).expect("load");
    }
    (dir, engine)
}

fn apply(c: &mut Criterion) {
    let (_dir, engine) = engine_with(10_000);
    let mut next = 0u64;
    c.bench_function("apply a batch of 256 puts (no fsync)", |b| {
        b.iter_batched(
            || {
                next += 256;
                (next..next + 256).map(put).collect::<Vec<_>>()
            },
            |cmds| {
                let refs: Vec<&Command> = cmds.iter().collect();
                engine.apply_batch(&refs, Durability::None).expect("apply")
            },
            BatchSize::SmallInput,
        )
    });
    // A lone write's apply: what a single client's put pays after its flush.
    c.bench_function("apply one put (no fsync)", |b| {
        b.iter(|| {
            next += 1;
            let cmd = put(next);
            engine
                .apply_batch(&[&cmd], Durability::None)
                .expect("apply")
        })
    });
}

fn reads(c: &mut Criterion) {
    let (_dir, engine) = engine_with(10_000);
    let one = RangeRequest {
        key: b"bench/00004242".to_vec(),
        ..Default::default()
    };
    c.bench_function("range one key at the current revision", |b| {
        b.iter(|| engine.range(&one).expect("range"))
    });
    let prefix = RangeRequest {
        key: b"bench/000042".to_vec(),
        range_end: b"bench/000043".to_vec(),
        ..Default::default()
    };
    c.bench_function("range a 100-key prefix", |b| {
        b.iter(|| engine.range(&prefix).expect("range"))
    });
    let (current, _) = engine.revisions().expect("revisions");
    c.bench_function("read 1000 revisions of history for a watcher", |b| {
        b.iter(|| {
            engine
                .read_events(current - 999, current, usize::MAX)
                .expect("events")
        })
    });
}

criterion_group!(benches, apply, reads);
criterion_main!(benches);
