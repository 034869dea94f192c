//! The scale check: lookups and opening at several peer counts, to show
//! that their cost stays flat (open O(1), lookups O(log n)) as the cache grows.

use std::time::{Duration, Instant};

use mtsession::PeerId;

use crate::Config;
use crate::workload::{
    LOOKUP_ID, LOOKUP_PHONE, LOOKUP_USERNAME, OPEN, err, rate, shuffled, with_option,
};

/// At most this many operations per timed run...
const MAX_OPS: usize = 10_000;
/// ...and at most about this long.
const RUN_TIME: Duration = Duration::from_secs(2);

/// One workload of one backend at one peer count.
#[derive(Clone, Debug)]
pub(crate) struct Point {
    pub(crate) backend: String,
    pub(crate) workload: &'static str,
    pub(crate) peers: i64,
    /// Operations per second, one per run.
    pub(crate) runs: Vec<f64>,
}

impl Point {
    pub(crate) fn median(&self) -> f64 {
        crate::report::median(&self.runs)
    }
}

/// The URL the scale check opens for `backend` (a file under `dir` for the
/// embedded ones).
fn url(backend: &str, config: &Config, dir: &std::path::Path) -> Result<String, String> {
    Ok(match backend {
        "memory" => "memory:".to_owned(),
        "sqlite" => format!("sqlite:{}", dir.join("scale.sqlite").display()),
        // sled's own default page cache (the raw engine's), not the store's
        // 64 MiB: a million peers and their indexes outgrow the latter.
        "sled" => format!(
            "sled:{}?cache_bytes=1073741824",
            dir.join("scale.sled").display()
        ),
        "redis" => with_option(&config.redis_url, "prefix=mtsession-bench-scale"),
        "postgres" => with_option(&config.postgres_url, "table_prefix=benchscale_"),
        "mysql" => with_option(&config.mysql_url, "table_prefix=benchscale_"),
        "mongo" => with_option(&config.mongo_url, "prefix=benchscale_"),
        other => return Err(format!("unknown backend {other:?}")),
    })
}

/// `repeat` runs of `op` over `items`, each until they run out (at most
/// [`MAX_OPS`]) or [`RUN_TIME`] passes; ops/s of each run.
async fn timed_runs<T, F, Fut>(repeat: usize, items: &[T], mut op: F) -> Result<Vec<f64>, String>
where
    F: FnMut(&T) -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let mut runs = Vec::with_capacity(repeat);
    for _ in 0..repeat {
        let started = Instant::now();
        let mut done = 0;
        for item in items.iter().take(MAX_OPS) {
            op(item).await?;
            done += 1;
            if started.elapsed() >= RUN_TIME {
                break;
            }
        }
        runs.push(rate(done, started));
    }
    Ok(runs)
}

/// The scale check of one backend at every count of `config.scale`.
pub(crate) async fn run(backend: &str, config: &Config) -> Result<Vec<Point>, String> {
    let dir = tempfile::tempdir().map_err(err)?;
    let url = url(backend, config, dir.path())?;
    let mut out = Vec::new();
    for &n in &config.scale {
        eprintln!("mtsession-bench: {backend} at {n} peers");
        let store = mtsession::open(&url).await.map_err(err)?;
        let name = format!("bench-scale-{n}");
        crate::workload::fill(&store, &name, n).await?;
        store.flush().await.map_err(err)?;
        let session = store.session(&name).map_err(err)?;
        let ids: Vec<i64> = shuffled(n).into_iter().take(MAX_OPS).collect();
        let mut point = |label: &str, workload: &'static str, runs: Vec<f64>| {
            out.push(Point {
                backend: label.to_owned(),
                workload,
                peers: n,
                runs,
            });
        };
        let runs = timed_runs(config.repeat, &ids, |id| {
            let (session, id) = (session.clone(), *id);
            async move {
                let id = PeerId::user(id).map_err(err)?;
                session
                    .peer(id)
                    .await
                    .map_err(err)?
                    .ok_or("a peer is missing")?;
                Ok(())
            }
        })
        .await?;
        point(backend, LOOKUP_ID, runs);
        for (workload, runs) in
            crate::raw::scale_lookups(backend, n, dir.path(), config.repeat, &ids, RUN_TIME)?
        {
            point(&format!("{backend} (raw engine)"), workload, runs);
        }
        let runs = timed_runs(config.repeat, &ids, |id| {
            let (session, username) = (session.clone(), format!("user{id}"));
            async move {
                session
                    .peer_by_username(&username)
                    .await
                    .map_err(err)?
                    .ok_or("a username is missing")?;
                Ok(())
            }
        })
        .await?;
        point(backend, LOOKUP_USERNAME, runs);
        let runs = timed_runs(config.repeat, &ids, |id| {
            let (session, phone) = (session.clone(), format!("799900{id}"));
            async move {
                session
                    .peer_by_phone(&phone)
                    .await
                    .map_err(err)?
                    .ok_or("a phone is missing")?;
                Ok(())
            }
        })
        .await?;
        point(backend, LOOKUP_PHONE, runs);
        drop(session);
        drop(store);
        if backend != "memory" {
            // A memory store opened again is empty: nothing to measure.
            let opens = vec![(); MAX_OPS];
            let runs = timed_runs(config.repeat, &opens, |()| {
                let (url, name) = (url.clone(), name.clone());
                async move {
                    let store = mtsession::open(&url).await.map_err(err)?;
                    store
                        .session(&name)
                        .map_err(err)?
                        .home_auth_key()
                        .await
                        .map_err(err)?
                        .ok_or("the home key is missing")?;
                    Ok(())
                }
            })
            .await?;
            point(backend, OPEN, runs);
        }
        let store = mtsession::open(&url).await.map_err(err)?;
        store.delete(&name).await.map_err(err)?;
        store.flush().await.map_err(err)?;
    }
    Ok(out)
}
