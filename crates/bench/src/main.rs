//! `mtsession-bench`: every store measured beside its raw engine doing the
//! same work (same key shapes, same indexes, same durability) in one run.
//!
//! Run through `cargo xtask bench --compare`, which starts the services and
//! passes their URLs. Writes `RESULTS.md`, `ratios.svg` and the raw figures
//! (`compare.json`) to `docs/bench` (or `--out`).

#![forbid(unsafe_code)]

mod raw;
mod report;
mod scale;
mod workload;

use report::Measure;

/// What to run.
#[derive(Clone, Debug)]
pub(crate) struct Config {
    /// Backends to measure (`memory`, `sqlite`, `sled`, `redis`, `postgres`, `mysql`, `mongo`).
    pub(crate) backends: Vec<String>,
    /// Repetitions of each workload; the table shows the median and the range.
    pub(crate) repeat: usize,
    /// Peers of the loaded session the lookups run on.
    pub(crate) peers: i64,
    /// Peers of the store the embedded open workload opens.
    pub(crate) open_peers: i64,
    /// Peer counts of the scale check (lookups and opening at each count,
    /// every backend measured); empty: no scale check.
    pub(crate) scale: Vec<i64>,
    /// Backends of the scale check (default: those measured, but MongoDB).
    pub(crate) scale_backends: Option<Vec<String>>,
    /// Where the results go.
    pub(crate) out_dir: std::path::PathBuf,
    /// Files of measures made outside this binary (`--extra-measures`).
    pub(crate) extra_measures: Vec<std::path::PathBuf>,
    pub(crate) redis_url: String,
    pub(crate) postgres_url: String,
    pub(crate) mysql_url: String,
    pub(crate) mongo_url: String,
}

impl Config {
    /// The same configuration with one run of each workload: one round.
    pub(crate) fn once(&self) -> Config {
        Config {
            repeat: 1,
            ..self.clone()
        }
    }
}

fn env_or(var: &str, default: &str) -> String {
    std::env::var(var)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_owned())
}

const USAGE: &str = "\
mtsession-bench: every store beside its raw engine, in one run

usage: mtsession-bench [OPTIONS]   (or: cargo xtask bench --compare [OPTIONS])

  --backends LIST         memory,sqlite,sled,redis,postgres,mysql,mongo (default: all)
  --repeat N              rounds: runs of each workload on each side (default 3)
  --peers N               peers of the loaded session (default 10000)
  --open-peers N          peers of the embedded stores' open workload (default 100000)
  --scale LIST|none       peer counts of the scale check (default 1000,100000,1000000)
  --scale-backends LIST   backends of the scale check (default: those measured but mongo)
  --out DIR               where RESULTS.md, ratios.svg and compare.json go (default docs/bench)
  --extra-measures FILE   measures made outside this binary, one JSON object a line

Servers: MTSESSION_TEST_REDIS_URL, MTSESSION_TEST_POSTGRES_URL,
MTSESSION_TEST_MYSQL_URL, MTSESSION_TEST_MONGO_URL (defaults: the local ports).";

fn parse_args() -> Result<Config, String> {
    let mut config = Config {
        backends: vec![
            "memory".into(),
            "sqlite".into(),
            "sled".into(),
            "redis".into(),
            "postgres".into(),
            "mysql".into(),
            "mongo".into(),
        ],
        repeat: 3,
        peers: 10_000,
        open_peers: 100_000,
        scale: vec![1_000, 100_000, 1_000_000],
        scale_backends: None,
        out_dir: std::path::PathBuf::from("docs/bench"),
        extra_measures: Vec::new(),
        redis_url: env_or("MTSESSION_TEST_REDIS_URL", "redis://127.0.0.1:6379"),
        postgres_url: env_or(
            "MTSESSION_TEST_POSTGRES_URL",
            "postgres://postgres@127.0.0.1:5432/test",
        ),
        mysql_url: env_or(
            "MTSESSION_TEST_MYSQL_URL",
            "mysql://root@127.0.0.1:3306/test",
        ),
        mongo_url: env_or(
            "MTSESSION_TEST_MONGO_URL",
            "mongodb://127.0.0.1:27017/?directConnection=true",
        ),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--backends" => {
                config.backends = value("--backends")?.split(',').map(str::to_owned).collect();
            }
            "--repeat" => {
                config.repeat = value("--repeat")?
                    .parse()
                    .map_err(|_| "--repeat takes a number")?;
            }
            "--peers" => {
                config.peers = value("--peers")?
                    .parse()
                    .map_err(|_| "--peers takes a number")?;
            }
            "--open-peers" => {
                config.open_peers = value("--open-peers")?
                    .parse()
                    .map_err(|_| "--open-peers takes a number")?;
            }
            "--scale" => {
                let counts = value("--scale")?;
                config.scale = if counts == "none" {
                    Vec::new()
                } else {
                    counts
                        .split(',')
                        .map(|n| match n.parse::<i64>() {
                            Ok(n) if n > 0 => Ok(n),
                            _ => Err("--scale takes positive peer counts (1000,100000) or none"),
                        })
                        .collect::<Result<_, _>>()?
                };
            }
            "--scale-backends" => {
                config.scale_backends = Some(
                    value("--scale-backends")?
                        .split(',')
                        .map(str::to_owned)
                        .collect(),
                );
            }
            "--out" => config.out_dir = value("--out")?.into(),
            "--help" | "-h" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            "--extra-measures" => config
                .extra_measures
                .push(value("--extra-measures")?.into()),
            other => return Err(format!("unknown argument {other:?} (--help lists them)")),
        }
    }
    // Both sides of the MongoDB rows without retryable writes (unless the
    // URL says otherwise): a write that is not retried is the floor, and a
    // one-node test server answers each retryable write far more slowly.
    if !config
        .mongo_url
        .to_ascii_lowercase()
        .contains("retrywrites=")
    {
        config.mongo_url = workload::with_option(&config.mongo_url, "retryWrites=false");
    }
    Ok(config)
}

/// The measures of `--extra-measures` files: made outside this binary, such
/// as grammers-session's `SqliteSession` (crates/bench/grammers-sqlite, run
/// by `cargo xtask bench --compare --with-peer-libraries`), whose libsql
/// cannot be linked beside rusqlite. One JSON object a line:
/// `{"backend":"sqlite","workload":"lookup by id","engine":"grammers","runs":[ops/s, …]}`,
/// with a workload name of this benchmark and a peer library's engine name.
fn read_extra_measures(paths: &[std::path::PathBuf]) -> Result<Vec<Measure>, String> {
    const WORKLOADS: &[&str] = &[
        workload::LOOKUP_ID,
        workload::LOOKUP_USERNAME,
        workload::LOOKUP_PHONE,
        workload::UPSERT_NEW,
        workload::UPSERT_EXISTING,
        workload::STATE,
        workload::OPEN,
    ];
    const ENGINES: &[&str] = &["grammers"];
    let mut out = Vec::new();
    for path in paths {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let at = format!("{}:{}", path.display(), i + 1);
            let value: serde_json::Value =
                serde_json::from_str(line).map_err(|e| format!("{at}: {e}"))?;
            let text = |name: &str| {
                value
                    .get(name)
                    .and_then(serde_json::Value::as_str)
                    .ok_or_else(|| format!("{at}: no string {name:?}"))
            };
            let backend = text("backend")?;
            let name = text("workload")?;
            let workload = WORKLOADS
                .iter()
                .find(|w| **w == name)
                .ok_or_else(|| format!("{at}: unknown workload {name:?}"))?;
            let name = text("engine")?;
            let engine = ENGINES
                .iter()
                .find(|e| **e == name)
                .ok_or_else(|| format!("{at}: unknown engine {name:?}"))?;
            let runs = value
                .get("runs")
                .and_then(serde_json::Value::as_array)
                .and_then(|runs| runs.iter().map(serde_json::Value::as_f64).collect())
                .ok_or_else(|| format!("{at}: \"runs\" is not an array of numbers"))?;
            out.push(Measure::new(backend, workload, engine, runs));
        }
    }
    Ok(out)
}

fn main() {
    let config = match parse_args() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("mtsession-bench: {e}");
            std::process::exit(2);
        }
    };
    let extra = match read_extra_measures(&config.extra_measures) {
        Ok(extra) => extra,
        Err(e) => {
            eprintln!("mtsession-bench: --extra-measures: {e}");
            std::process::exit(2);
        }
    };
    for m in extra
        .iter()
        .filter(|m| !config.backends.contains(&m.backend))
    {
        eprintln!(
            "mtsession-bench: --extra-measures: {} is not measured; ignoring its {} {:?}",
            m.backend, m.engine, m.workload
        );
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("mtsession-bench: no runtime: {e}");
            std::process::exit(1);
        }
    };
    let started = std::time::Instant::now();
    let write_report = |measures: &[Measure], points: &[scale::Point]| {
        if let Err(e) = report::write(&config, measures, points, started.elapsed()) {
            eprintln!("mtsession-bench: cannot write the report: {e}");
            std::process::exit(1);
        }
    };
    let mut measures: Vec<Measure> = Vec::new();
    let mut failures = Vec::new();
    for backend in &config.backends {
        eprintln!("mtsession-bench: {backend}");
        match runtime.block_on(workload::run_backend(backend, &config)) {
            Ok(found) => measures.extend(found),
            Err(e) => {
                eprintln!("mtsession-bench: {backend} failed: {e}");
                failures.push(format!("{backend}: {e}"));
            }
        }
        // The peer libraries measured outside this binary, beside this
        // backend's own rows (in their last column).
        measures.extend(extra.iter().filter(|m| &m.backend == backend).cloned());
        // Written after every backend, so that a run stopped during a slow
        // one keeps what the others measured; the last write is the report.
        write_report(&measures, &[]);
    }
    let mut points = Vec::new();
    if !config.scale.is_empty() {
        // A million peers written to the Python MongoDB-wire test server
        // take too long to be part of the default run.
        let scale_backends = config.scale_backends.clone().unwrap_or_else(|| {
            config
                .backends
                .iter()
                .filter(|b| *b != "mongo")
                .cloned()
                .collect()
        });
        for backend in &scale_backends {
            match runtime.block_on(scale::run(backend, &config)) {
                Ok(found) => points.extend(found),
                Err(e) => {
                    eprintln!("mtsession-bench: the scale check of {backend} failed: {e}");
                    failures.push(format!("{backend} scale check: {e}"));
                }
            }
            write_report(&measures, &points);
        }
    }
    println!("{}", report::table(&measures));
    if !points.is_empty() {
        println!("{}", report::scale_table(&config, &points));
    }
    if !failures.is_empty() {
        eprintln!("mtsession-bench: failed: {}", failures.join("; "));
        std::process::exit(1);
    }
}
