//! The results: a table, `docs/bench/RESULTS.md`, `docs/bench/ratios.svg`
//! and the raw figures as JSON.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use serde_json::json;

use crate::Config;
use crate::raw::SQLITE_ROLLBACK;
use crate::scale::Point;
use crate::workload::{
    MEMORY_LEAN, MIN_RUN, OPENS, SERVER_OPENS, STATE_WRITES, WRITE_BEHIND_DELAY,
};

/// The goal: a store at least this fraction of its raw engine's speed.
pub(crate) const GOAL: f64 = 0.7;

/// The engine name of the second raw floor of the batch upserts: the raw
/// engine doing the reads a merging upsert needs besides the same writes.
pub(crate) const RAW_READS: &str = "raw-reads";

/// The runs of one workload on one engine (`raw`, [`RAW_READS`], `mtsession`,
/// `grammers`).
#[derive(Clone, Debug)]
pub(crate) struct Measure {
    pub(crate) backend: String,
    pub(crate) workload: &'static str,
    pub(crate) engine: &'static str,
    /// Operations per second, one per run.
    pub(crate) runs: Vec<f64>,
    /// Whether the runs were measured in turns with the other engines of
    /// the row, one run of each per round, in the same order: run `i` of
    /// one engine and run `i` of another ran back to back, so their ratio
    /// is not moved by the machine's speed drifting between rounds.
    pub(crate) in_turns: bool,
}

impl Measure {
    /// Adds the runs of `more` to the measures of `into` with the same
    /// backend, workload and engine (or appends them).
    pub(crate) fn merge_into(into: &mut Vec<Measure>, more: Vec<Measure>) {
        for m in more {
            match into.iter_mut().find(|e| {
                e.backend == m.backend && e.workload == m.workload && e.engine == m.engine
            }) {
                Some(existing) => existing.runs.extend(m.runs),
                None => into.push(m),
            }
        }
    }

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
            in_turns: false,
        }
    }

    /// `self` over `basis`: with both measured in turns, the median of the
    /// ratios of the runs made in the same round; else the ratio of the
    /// medians. `None` when the basis measured nothing.
    pub(crate) fn over(&self, basis: &Measure) -> Option<f64> {
        if self.in_turns && basis.in_turns && self.runs.len() == basis.runs.len() {
            let ratios: Vec<f64> = self
                .runs
                .iter()
                .zip(&basis.runs)
                .filter(|(_, b)| **b > 0.0)
                .map(|(s, b)| s / b)
                .collect();
            (ratios.len() == self.runs.len() && !ratios.is_empty()).then(|| median(&ratios))
        } else {
            (basis.median() > 0.0).then(|| self.median() / basis.median())
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
    /// The raw engine doing the same reads as the store's merge besides the
    /// same writes ([`RAW_READS`]).
    reads: Option<&'a Measure>,
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
        store.over(basis).map(|r| (r, goal))
    }

    /// mtsession over grammers-session on a row that also has a raw engine
    /// (the SQLite rows, with `--with-peer-libraries`); the goal is to be
    /// ahead (≥ 1×).
    fn peer_ratio(&self) -> Option<f64> {
        self.raw?;
        let (store, peer) = (self.store?, self.peer?);
        store.over(peer)
    }

    /// mtsession over the raw engine doing the same reads.
    fn reads_ratio(&self) -> Option<f64> {
        let (store, reads) = (self.store?, self.reads?);
        store.over(reads)
    }

    /// The ratio cell and the goal cell: ✓ when the store reaches the goal
    /// over the blind floor, or else over the floor with the same reads
    /// (saying so).
    fn verdict(&self) -> (String, &'static str) {
        match self.ratio() {
            Some((r, goal)) => {
                let ratio = if self.raw.is_some() {
                    format!("{r:.2}×")
                } else {
                    format!("{r:.2}× of grammers")
                };
                let met = if r >= goal {
                    "✓"
                } else if self.reads_ratio().is_some_and(|r| r >= goal) {
                    "✓ (vs same reads)"
                } else {
                    "✗"
                };
                (ratio, met)
            }
            None => ("–".to_owned(), "–"),
        }
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
                reads: None,
                store: None,
                peer: None,
            });
        match m.engine {
            "raw" => row.raw = Some(m),
            RAW_READS => row.reads = Some(m),
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
        "| backend | workload | raw engine ops/s (median, min–max) | mtsession ops/s (median, min–max) | ratio | raw engine with the same reads ops/s (median, min–max) | ratio to it | ≥ 0.7× | grammers-session ops/s (mtsession ÷ it, goal ≥ 1×) |\n\
         |---|---|---:|---:|---:|---:|---:|:-:|---:|\n",
    );
    for row in rows(measures) {
        let cell = |m: Option<&Measure>| {
            m.map_or("–".to_owned(), |m| {
                format!("{} ({})", ops(m.median()), m.range())
            })
        };
        let (ratio, met) = row.verdict();
        let reads_ratio = row
            .reads_ratio()
            .map_or("–".to_owned(), |r| format!("{r:.2}×"));
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {ratio} | {} | {reads_ratio} | {met} | {} |",
            row.backend,
            row.workload,
            cell(row.raw),
            cell(row.store),
            cell(row.reads),
            match row.peer_ratio() {
                Some(r) => format!(
                    "{} · {r:.2}× {}",
                    cell(row.peer),
                    if r >= 1.0 { "✓" } else { "✗" }
                ),
                None => cell(row.peer),
            }
        );
    }
    out
}

/// A horizontal bar chart of the ratios, with lines at the goal and at 1×;
/// rows with a floor doing the same reads mark the ratio to it with a
/// diamond.
fn svg(measures: &[Measure]) -> String {
    struct Bar {
        label: String,
        ratio: f64,
        goal: f64,
        reads: Option<f64>,
    }
    let rows: Vec<Bar> = rows(measures)
        .into_iter()
        .filter_map(|r| {
            let basis = if r.raw.is_some() {
                ""
            } else {
                " (vs grammers)"
            };
            r.ratio().map(|(ratio, goal)| Bar {
                label: format!("{} · {}{basis}", r.backend, r.workload),
                ratio,
                goal,
                reads: r.reads_ratio(),
            })
        })
        .collect();
    let any_reads = rows.iter().any(|b| b.reads.is_some());
    let (label_w, bar_w, row_h) = (430.0, 420.0, 18.0);
    let top = if any_reads { 56.0 } else { 40.0 };
    let max = rows
        .iter()
        .flat_map(|b| [Some(b.ratio), b.reads])
        .flatten()
        .fold(1.5_f64, f64::max)
        .min(4.0);
    let x = |ratio: f64| label_w + bar_w * ratio.min(max) / max;
    let color = |ratio: f64, goal: f64| if ratio >= goal { "#3a7d44" } else { "#c0392b" };
    let diamond = |cx: f64, cy: f64, fill: &str| {
        format!(
            "<polygon points=\"{:.1},{cy:.1} {cx:.1},{:.1} {:.1},{cy:.1} {cx:.1},{:.1}\" \
             fill=\"{fill}\" stroke=\"black\" stroke-width=\"1.2\"/>",
            cx - 5.0,
            cy - 6.0,
            cx + 5.0,
            cy + 6.0
        )
    };
    let height = top + row_h * rows.len() as f64 + 30.0;
    let width = label_w + bar_w + if any_reads { 200.0 } else { 60.0 };
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" \
         font-family=\"sans-serif\" font-size=\"11\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"10\" y=\"20\" font-size=\"14\">mtsession ops/s as a fraction of the raw engine's, same work, same run</text>\n"
    );
    if any_reads {
        let _ = writeln!(
            out,
            "{}<text x=\"18\" y=\"40\">bars: over the raw engine doing the bare work; diamonds (batch \
             upserts, opening a server's store): over it also doing the reads the store must (merge, schema check)</text>",
            diamond(10.0, 36.0, "white")
        );
    }
    for (i, bar) in rows.iter().enumerate() {
        let y = top + row_h * i as f64;
        let mut text = format!("{:.2}×", bar.ratio);
        let mut end = x(bar.ratio);
        let mut mark = String::new();
        if let Some(reads) = bar.reads {
            let _ = write!(text, " · {reads:.2}× vs same reads");
            end = end.max(x(reads) + 5.0);
            mark = diamond(x(reads), y + 9.0, color(reads, bar.goal));
        }
        let _ = writeln!(
            out,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>\
             <rect x=\"{label_w}\" y=\"{}\" width=\"{:.1}\" height=\"{}\" fill=\"{}\"/>{mark}\
             <text x=\"{:.1}\" y=\"{}\">{text}</text>",
            label_w - 6.0,
            y + 12.0,
            escape(&bar.label),
            y + 2.0,
            x(bar.ratio) - label_w,
            row_h - 4.0,
            color(bar.ratio, bar.goal),
            end + 4.0,
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
    let delay = WRITE_BEHIND_DELAY.as_millis();
    let min_run = MIN_RUN.as_millis();
    let results = format!(
        "# Benchmark results\n\n\
         Written by `cargo xtask bench --compare` ({} rounds, {} peers per \
         loaded session, {} peers in the embedded open workload; {cores} cores; the whole run \
         took {:.0} s). Each mtsession store is measured beside its raw engine doing the same \
         work in the same run: the same rows and indexes, the same durability (durable writes \
         fsync before they return; the `sqlite write-behind` rows run `synchronous=NORMAL` with \
         a synced commit at least every {delay} ms and at the end of each run, as the \
         store's `max_delay_ms={delay}` does). Each backend runs in rounds, one run of every \
         workload on the store and one on the raw engine per round, back to back (the store \
         first in even rounds, the raw engine in odd ones), so that the machine's speed, which \
         moves by half from one minute to the next here, falls on both sides of a ratio: the \
         ratio is the median of the rounds' ratios (mtsession's run over the raw engine's run \
         of the same round), and the goal is ≥ {GOAL}×. A run repeats its pass (the peers' \
         lookups, batch upserts of every peer, {STATE_WRITES} state writes, {OPENS} opens or {SERVER_OPENS} \
         on a server's raw engine) until \
         its timed parts add up to {min_run} ms at least. The memory store has no raw engine: its ratio is over \
         grammers-session's own `MemorySession`, and the goal is to be ahead (≥ 1×). That \
         session keeps an id, a kind and a hash per peer; the `memory` rows cache peers with a \
         username, a phone and a name besides (three more strings to copy and two indexes to \
         keep), the `{MEMORY_LEAN}` rows the same information as grammers; a cached peer takes \
         {} bytes in the memory store's table (and one more allocation for its text when it \
         has a username, a phone or a name) and {} in grammers' (id and value). The \
         `{MEMORY_LEAN}` rows and grammers' take turns, one run each, so that a change in the machine's speed \
         during the run falls on both. The raw SQLite lookups read every column they select \
         into owned values, and the raw sled and Redis lookups decode the stored value (JSON) \
         into owned fields, as the store must to return the peer. With \
         `--with-peer-libraries`, the last column of the SQLite rows is grammers-session's own \
         `SqliteSession` (libsql, built and run as a separate program): it keeps an id, a \
         kind and a hash per peer in a file with a rollback journal. The `{SQLITE_ROLLBACK}` \
         row is rusqlite opening the same file as the raw `sqlite` row after `PRAGMA \
         journal_mode = DELETE`: the store keeps WAL, which lets readers and a writer in \
         other processes go on without `database is locked`, and a WAL file costs a `-wal` \
         and a `-shm` to create on open and a checkpoint on close, which a rollback journal \
         does not. Both sides of the \
         MongoDB rows write with `retryWrites=false` (unless the URL sets it); `cargo xtask \
         bench` runs them against SecantusDB, a MongoDB-wire server, where no mongod is \
         installed, so they say little about a production MongoDB. A correct batch upsert must \
         first read the stored peers of the batch's ids (fields the update does not know keep \
         their stored values) and the current owners of its usernames and phones (which move \
         to the new peer); the blind `raw` floor writes without reading. So the batch-upsert \
         rows of SQLite, sled, Redis, PostgreSQL, MySQL and MongoDB also show `{RAW_READS}`, the raw \
         engine doing those same reads before the same writes, \
         atomically, in as few round trips as it allows (one sled transaction, one Redis \
         script, one `SELECT` in the SQL transaction; on MongoDB three `$in` queries and no \
         transaction), and the ratio to it; \"✓ (vs same reads)\" marks a row that meets the \
         goal only against that floor. Opening a Redis, PostgreSQL, MySQL or MongoDB store has \
         the same second floor: the store must refuse a store of a newer schema before it \
         returns, so it reads the schema version (on SQL with the applied migrations, in one \
         statement) before the home key, and the `{RAW_READS}` floor does that read too. The PostgreSQL \
         and MySQL tables of both sides are `ANALYZE`d before they are measured (the \
         test server runs without autovacuum; a plan made while a table was empty scans it).\n\n![ratios](ratios.svg)\n\n{}\n",
        config.repeat,
        config.peers,
        config.open_peers,
        elapsed.as_secs_f64(),
        session_core::PeerTable::ENTRY_BYTES,
        std::mem::size_of::<(
            grammers_session::types::PeerId,
            grammers_session::types::PeerInfo,
        )>(),
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
    std::fs::write(
        config.out_dir.join("compare.json"),
        serde_json::to_string_pretty(&raw).unwrap_or_default(),
    )
}
