//! Criterion benchmarks: the shared workloads of `session_conformance::bench`
//! on session-sql over SQLite (`sql+sqlite:`), PostgreSQL and MySQL/MariaDB,
//! with `MemoryStore` as the baseline, in one run. The raw engines doing the
//! same work are measured by `cargo xtask bench --compare`.
//!
//! The servers come from `MTSESSION_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`) and `MTSESSION_TEST_MYSQL_URL`
//! (default `mysql://root@127.0.0.1:3306/test`); `MTSESSION_BENCH_ENGINES`
//! (default `sqlite,postgres,mysql`) picks the engines. Server tables are
//! written under a fresh prefix that is dropped at the end, and the SQLite
//! file lives in a temporary directory.
//!
//! The server tables are filled with a session of 10 000 peers and analyzed
//! before the run, as autovacuum would have done on a server where it runs
//! (the test servers run without it): PostgreSQL keeps the plans of its
//! foreign-key checks per connection, and plans made on empty tables scan.
//!
//! Run with `cargo bench -p session-sql`.

use std::time::{SystemTime, UNIX_EPOCH};

use criterion::{Criterion, criterion_group, criterion_main};
use session_conformance::bench::{self, BenchTarget};
use session_core::Store;
use session_sql::SqlStore;

fn env(var: &str, default: &str) -> String {
    std::env::var(var)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_owned())
}

fn target(label: &str, url: String, prefix: String) -> BenchTarget {
    BenchTarget::new(label, move || {
        let builder = SqlStore::builder(&url).table_prefix(prefix.clone());
        async move { Ok(Store::new(builder.open().await?)) }
    })
}

fn benches(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("a temp directory");
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let prefix = format!("bench_{:x}_{nanos:x}_", std::process::id());
    let mut targets = vec![BenchTarget::memory()];
    let mut servers = Vec::new();
    for engine in env("MTSESSION_BENCH_ENGINES", "sqlite,postgres,mysql")
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
    {
        let (label, url) = match engine {
            "sqlite" => (
                "sql+sqlite",
                format!("sql+sqlite:{}", dir.path().join("bench.db").display()),
            ),
            "postgres" => (
                "postgres",
                env(
                    "MTSESSION_TEST_POSTGRES_URL",
                    "postgres://postgres@127.0.0.1:5432/test",
                ),
            ),
            "mysql" => (
                "mysql",
                env(
                    "MTSESSION_TEST_MYSQL_URL",
                    "mysql://root@127.0.0.1:3306/test",
                ),
            ),
            other => panic!("MTSESSION_BENCH_ENGINES: unknown engine {other:?}"),
        };
        if engine != "sqlite" {
            servers.push(url.clone());
        }
        targets.push(target(label, url, prefix.clone()));
    }
    let runtime = tokio::runtime::Runtime::new().expect("a Tokio runtime");
    for url in &servers {
        runtime.block_on(async {
            let sql = SqlStore::builder(url)
                .table_prefix(prefix.clone())
                .open()
                .await
                .expect("open the bench tables");
            let store = Store::new(sql.clone());
            let session = store.open("bench-warm").await.expect("session");
            let peers: Vec<_> = (bench::FIRST_ID..bench::FIRST_ID + bench::PEERS)
                .map(bench::peer)
                .collect();
            for batch in peers.chunks(1_000) {
                session.cache_peers(batch).await.expect("warm up");
            }
            sql.analyze().await.expect("analyze");
        });
    }
    bench::run(c, "sql", targets);
    for url in &servers {
        runtime
            .block_on(
                SqlStore::builder(url)
                    .table_prefix(prefix.clone())
                    .drop_tables(),
            )
            .expect("drop the bench tables");
    }
}

criterion_group!(sql_benches, benches);
criterion_main!(sql_benches);
