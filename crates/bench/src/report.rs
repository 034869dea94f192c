//! The results: a table, `docs/bench/RESULTS.md`, `docs/bench/ratios.svg`
//! and the raw figures as JSON.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use serde_json::json;

use crate::Config;
use crate::scale::Point;
use crate::workload::MEMORY_LEAN;

/// The goal: a store at least this fraction of its raw engine's speed.
pub(crate) const GOAL: f64 = 0.7;

/// The runs of one workload on one engine (`raw`, `mtsession`, `grammers`).
#[derive(Clone, Debug)]
pub(crate) struct Measure {
    pub(crate) backend: String,
    pub(crate) workload: &'static str,
    pub(crate) engine: &'static str,
    /// Operations per second, one per run.
    pub(crate) runs: Vec<f64>,
}

impl Measure {
    pub(crate) fn new(
        backend: &str,
        workload: &'static str,
        engine: &'static str,
        runs: Vec<f64>,
    ) -> Self {
        Measure {
            backend: backend.to_owned(),
            workload,
            engine,
            runs,
        }
    }

    fn sorted(&self) -> Vec<f64> {
        let mut runs = self.runs.clone();
        runs.sort_by(f64::total_cmp);
        runs
    }

    pub(crate) fn median(&self) -> f64 {
        median(&self.runs)
    }

    fn range(&self) -> String {
        let runs = self.sorted();
        match (runs.first(), runs.last()) {
            (Some(lo), Some(hi)) => format!("{}–{}", ops(*lo), ops(*hi)),
            _ => "-".to_owned(),
        }
    }
}

/// The median of `runs` (the upper one of an even count); 0 for none.
pub(crate) fn median(runs: &[f64]) -> f64 {
    let mut runs = runs.to_vec();
    runs.sort_by(f64::total_cmp);
    runs.get(runs.len() / 2).copied().unwrap_or(0.0)
}

/// Ops/s in a short form: 1.2M, 34.5k, 812.
fn ops(value: f64) -> String {
    if value >= 1e6 {
        format!("{:.2}M", value / 1e6)
    } else if value >= 1e3 {
        format!("{:.1}k", value / 1e3)
    } else {
        format!("{value:.0}")
    }
}

/// One row of the comparison: a backend's workload on each engine.
struct Row<'a> {
    backend: &'a str,
    workload: &'static str,
    raw: Option<&'a Measure>,
    store: Option<&'a Measure>,
    peer: Option<&'a Measure>,
}

impl Row<'_> {
    /// mtsession over the raw engine; where there is none (the memory
    /// store), over grammers-session, with the goal of being ahead (1×).
    fn ratio(&self) -> Option<(f64, f64)> {
        let store = self.store?;
        let (basis, goal) = match (self.raw, self.peer) {
            (Some(raw), _) => (raw, GOAL),
            (None, Some(peer)) => (peer, 1.0),
            (None, None) => return None,
        };
        (basis.median() > 0.0).then(|| (store.median() / basis.median(), goal))
    }
}

fn rows(measures: &[Measure]) -> Vec<Row<'_>> {
    let mut keyed: BTreeMap<(String, usize), Row<'_>> = BTreeMap::new();
    let order = |workload: &str| {
        measures
            .iter()
            .position(|m| m.workload == workload)
            .unwrap_or(usize::MAX)
    };
    for m in measures {
        let row = keyed
            .entry((m.backend.clone(), order(m.workload)))
            .or_insert(Row {
                backend: &m.backend,
                workload: m.workload,
                raw: None,
                store: None,
                peer: None,
            });
        match m.engine {
            "raw" => row.raw = Some(m),
            "mtsession" => row.store = Some(m),
            _ => row.peer = Some(m),
        }
    }
    let backend_order = |b: &str| {
        measures
            .iter()
            .position(|m| m.backend == b)
            .unwrap_or(usize::MAX)
    };
    let mut out: Vec<Row<'_>> = keyed.into_values().collect();
    out.sort_by_key(|r| (backend_order(r.backend), order(r.workload)));
    out
}

/// The comparison as a Markdown table.
pub(crate) fn table(measures: &[Measure]) -> String {
    let mut out = String::from(
        "| backend | workload | raw engine ops/s (median, min–max) | mtsession ops/s (median, min–max) | ratio | ≥ 0.7× | grammers-session ops/s |\n\
         |---|---|---:|---:|---:|:-:|---:|\n",
    );
    for row in rows(measures) {
        let cell = |m: Option<&Measure>| {
            m.map_or("–".to_owned(), |m| {
                format!("{} ({})", ops(m.median()), m.range())
            })
        };
        let (ratio, met) = match row.ratio() {
            Some((r, goal)) => (
                if row.raw.is_some() {
                    format!("{r:.2}×")
                } else {
                    format!("{r:.2}× of grammers")
                },
                if r >= goal { "✓" } else { "✗" },
            ),
            None => ("–".to_owned(), "–"),
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {ratio} | {met} | {} |",
            row.backend,
            row.workload,
            cell(row.raw),
            cell(row.store),
            cell(row.peer)
        );
    }
    out
}

/// A horizontal bar chart of the ratios, with lines at the goal and at 1×.
fn svg(measures: &[Measure]) -> String {
    let rows: Vec<(String, f64, f64)> = rows(measures)
        .into_iter()
        .filter_map(|r| {
            let basis = if r.raw.is_some() {
                ""
            } else {
                " (vs grammers)"
            };
            r.ratio().map(|(ratio, goal)| {
                (
                    format!("{} · {}{basis}", r.backend, r.workload),
                    ratio,
                    goal,
                )
            })
        })
        .collect();
    let (label_w, bar_w, row_h, top) = (430.0, 420.0, 18.0, 40.0);
    let max = rows
        .iter()
        .map(|(_, r, _)| *r)
        .fold(1.5_f64, f64::max)
        .min(4.0);
    let x = |ratio: f64| label_w + bar_w * ratio.min(max) / max;
    let height = top + row_h * rows.len() as f64 + 30.0;
    let width = label_w + bar_w + 60.0;
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" \
         font-family=\"sans-serif\" font-size=\"11\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"10\" y=\"20\" font-size=\"14\">mtsession ops/s as a fraction of the raw engine's, same work, same run</text>\n"
    );
    for (i, (label, ratio, goal)) in rows.iter().enumerate() {
        let y = top + row_h * i as f64;
        let color = if *ratio >= *goal {
            "#3a7d44"
        } else {
            "#c0392b"
        };
        let _ = writeln!(
            out,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>\
             <rect x=\"{label_w}\" y=\"{}\" width=\"{:.1}\" height=\"{}\" fill=\"{color}\"/>\
             <text x=\"{:.1}\" y=\"{}\">{ratio:.2}×</text>",
            label_w - 6.0,
            y + 12.0,
            escape(label),
            y + 2.0,
            x(*ratio) - label_w,
            row_h - 4.0,
            x(*ratio) + 4.0,
            y + 12.0,
        );
    }
    for (value, name) in [(GOAL, "0.7× goal"), (1.0, "1×")] {
        let _ = writeln!(
            out,
            "<line x1=\"{0:.1}\" x2=\"{0:.1}\" y1=\"{1}\" y2=\"{2}\" stroke=\"#555\" stroke-dasharray=\"4 3\"/>\
             <text x=\"{0:.1}\" y=\"{3}\" text-anchor=\"middle\">{name}</text>",
            x(value),
            top - 4.0,
            height - 24.0,
            height - 10.0
        );
    }
    out.push_str("</svg>\n");
    out
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The scale check as a Markdown table: ops/s at each peer count and the
/// largest count's figure over the smallest's (1× is flat).
pub(crate) fn scale_table(config: &Config, points: &[Point]) -> String {
    let mut counts: Vec<i64> = config.scale.clone();
    counts.sort_unstable();
    counts.dedup();
    let mut out = String::from("| backend | workload |");
    for n in &counts {
        let _ = write!(out, " {} peers |", ops(*n as f64));
    }
    out.push_str(" largest ÷ smallest |\n|---|---|");
    for _ in &counts {
        out.push_str("---:|");
    }
    out.push_str("---:|\n");
    let mut keys: Vec<(&str, &str)> = Vec::new();
    for p in points {
        if !keys.contains(&(p.backend.as_str(), p.workload)) {
            keys.push((p.backend.as_str(), p.workload));
        }
    }
    for (backend, workload) in keys {
        let at = |n: i64| {
            points
                .iter()
                .find(|p| p.backend == backend && p.workload == workload && p.peers == n)
                .map(Point::median)
        };
        let _ = write!(out, "| {backend} | {workload} |");
        for n in &counts {
            let _ = write!(out, " {} |", at(*n).map_or("–".to_owned(), ops));
        }
        let flat = match (
            counts.first().and_then(|n| at(*n)),
            counts.last().and_then(|n| at(*n)),
        ) {
            (Some(lo), Some(hi)) if lo > 0.0 => format!("{:.2}×", hi / lo),
            _ => "–".to_owned(),
        };
        let _ = writeln!(out, " {flat} |");
    }
    out
}

/// Writes RESULTS.md, ratios.svg and compare.json.
pub(crate) fn write(
    config: &Config,
    measures: &[Measure],
    points: &[Point],
    elapsed: Duration,
) -> std::io::Result<()> {
    std::fs::create_dir_all(&config.out_dir)?;
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let results = format!(
        "# Benchmark results\n\n\
         Written by `cargo xtask bench --compare` ({} runs of each workload, {} peers per \
         loaded session, {} peers in the embedded open workload; {cores} cores; the whole run \
         took {:.0} s). Each mtsession store is measured beside its raw engine doing the same \
         work in the same run: the same rows and indexes, the same durability (durable writes \
         fsync before they return; the `sqlite write-behind` row compares with \
         `synchronous=NORMAL`). The ratio is mtsession's median over the raw engine's median; \
         the goal is ≥ {GOAL}×. The memory store has no raw engine: its ratio is over \
         grammers-session's own `MemorySession`, and the goal is to be ahead (≥ 1×). That \
         session keeps an id, a kind and a hash per peer; the `memory` rows cache peers with a \
         username, a phone and a name besides (three more strings to copy and two indexes to \
         keep), the `{MEMORY_LEAN}` rows the same information as grammers. Both sides of the \
         MongoDB rows write with `retryWrites=false` (unless the URL sets it); `cargo xtask \
         bench` runs them against SecantusDB, a MongoDB-wire server, where no mongod is \
         installed, so they say little about a production MongoDB. The PostgreSQL \
         and MySQL tables of both sides are `ANALYZE`d before they are measured (the \
         test server runs without autovacuum; a plan made while a table was empty scans it).\n\n![ratios](ratios.svg)\n\n{}\n",
        config.repeat,
        config.peers,
        config.open_peers,
        elapsed.as_secs_f64(),
        table(measures)
    );
    let results = if points.is_empty() {
        results
    } else {
        format!(
            "{results}\n## Scale\n\n\
             Lookups (by id, username and phone) and opening the store + reading the home key, \
             on one session holding each number of peers (filled in batches of 5 000; up to 10 000 \
             operations or 2 s per run, {} runs, median). The last column divides the figure at \
             the largest count by the one at the smallest: 1× is flat. sled runs here with \
             `cache_bytes=1073741824` (sled's own default; the store's is 64 MiB, which a \
             million peers and their indexes outgrow).\n\n{}",
            config.repeat,
            scale_table(config, points)
        )
    };
    std::fs::write(config.out_dir.join("RESULTS.md"), results)?;
    std::fs::write(config.out_dir.join("ratios.svg"), svg(measures))?;
    let raw: Vec<_> = measures
        .iter()
        .map(|m| json!({"backend": m.backend, "workload": m.workload, "engine": m.engine, "ops_per_sec": m.runs}))
        .chain(points.iter().map(|p| json!({"backend": p.backend, "workload": p.workload, "engine": "mtsession", "peers": p.peers, "ops_per_sec": p.runs})))
        .collect();
    std::fs::create_dir_all("target/bench")?;
    std::fs::write(
        "target/bench/compare.json",
        serde_json::to_string_pretty(&raw).unwrap_or_default(),
    )
}
