//! Opening foreign SQLite files read-only, checking they are whole, reading
//! loosely typed cells, and writing new files atomically with mode 0600.

use std::collections::BTreeSet;
use std::error::Error as StdError;
use std::fmt;
use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rusqlite::types::Value;
// Copies into a new file with mode 0600 (a copy may hold keys).
use rusqlite::{Connection, ErrorCode, OpenFlags};
use session_core::files::copy_private_file as copy_private;
use session_core::{Error, Result};

use super::ForeignFormat;

/// The first 16 bytes of every SQLite 3 database.
const SQLITE_MAGIC: &[u8; 16] = b"SQLite format 3\0";

/// An SQLite failure on a named file: keeps the path in the message and the
/// SQLite error as the source.
#[derive(Debug)]
pub(crate) struct FileError {
    file: PathBuf,
    action: &'static str,
    source: rusqlite::Error,
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.action,
            self.file.display(),
            self.source
        )
    }
}

impl StdError for FileError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        Some(&self.source)
    }
}

/// Names a file in errors. A path that is empty or starts or ends with white
/// space is quoted, so that the message shows where it begins and ends.
pub(crate) fn describe(path: &Path) -> String {
    format!("file {}", show_path(path))
}

/// The start of a very long path, for messages.
fn shorten_path(path: &Path) -> String {
    let shown = show_path(path);
    if shown.chars().count() <= 80 {
        return shown;
    }
    let start: String = shown.chars().take(60).collect();
    format!("{start}… ({} characters)", shown.chars().count())
}

/// A path for messages, quoted when white space at either end would hide.
pub(crate) fn show_path(path: &Path) -> String {
    let shown = path.display().to_string();
    if shown.is_empty() || shown.trim() != shown {
        format!("\"{shown}\"")
    } else {
        shown
    }
}

/// Converts an SQLite error on `path`: damage becomes `Corrupt`, anything
/// else `Backend`, both naming the file.
pub(crate) fn sql_error(path: &Path, action: &'static str, e: rusqlite::Error) -> Error {
    let damaged = matches!(
        e.sqlite_error_code(),
        Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase)
    );
    if damaged {
        let message = format!("SQLite reports damage while {action} it: {e}");
        return Error::Corrupt {
            what: describe(path),
            message,
            source: Some(Box::new(FileError {
                file: path.to_owned(),
                action,
                source: e,
            })),
        };
    }
    Error::backend(
        "sqlite",
        FileError {
            file: path.to_owned(),
            action,
            source: e,
        },
    )
}

/// Converts a file-system error on `path`. A path that cannot name a file
/// (through a file, too long, a loop of symbolic links) is the caller's
/// `InvalidInput`; a missing file is `NotFound`; anything else (permissions,
/// I/O errors) is a `Backend` error of the file system, naming the file.
fn io_error(path: &Path, action: &str, e: io::Error) -> Error {
    let shown = show_path(path);
    let is_link = fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
    match e.kind() {
        io::ErrorKind::NotFound if is_link => {
            let target = fs::read_link(path)
                .map(|t| format!(" to {}", t.display()))
                .unwrap_or_default();
            Error::NotFound {
                what: format!("the file that {shown} (a symbolic link{target}) points to"),
            }
        }
        io::ErrorKind::NotFound => Error::NotFound {
            what: describe(path),
        },
        io::ErrorKind::NotADirectory => Error::invalid(format!(
            "cannot use {shown}: a part of the path before the file name is a file, not a directory"
        )),
        io::ErrorKind::InvalidFilename => Error::invalid(format!(
            "cannot use {}: the path or a name in it is too long",
            shorten_path(path)
        )),
        // `ErrorKind::FilesystemLoop` cannot be named on stable Rust yet.
        kind if format!("{kind:?}") == "FilesystemLoop" => Error::invalid(format!(
            "cannot use {shown}: it is a symbolic link that leads back to itself (a loop of \
             links), not a session file"
        )),
        _ => Error::backend(
            "file system",
            io::Error::new(e.kind(), format!("{action} {shown}: {e}")),
        ),
    }
}

/// A foreign SQLite file opened read-only.
pub(crate) struct ForeignDb {
    // Dropped before `_copy`, which removes the files it reads.
    conn: Connection,
    path: PathBuf,
    _copy: Option<PrivateCopy>,
}

/// A private directory holding a copy of a foreign file, removed on drop.
struct PrivateCopy {
    dir: PathBuf,
}

static COPY_COUNTER: AtomicU64 = AtomicU64::new(0);

impl PrivateCopy {
    fn new() -> io::Result<PrivateCopy> {
        let n = COPY_COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("mtsession-read-{}-{n}", std::process::id()));
        let mut builder = fs::DirBuilder::new();
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt;
            builder.mode(0o700);
        }
        builder.create(&dir)?;
        Ok(PrivateCopy { dir })
    }
}

impl Drop for PrivateCopy {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

impl ForeignDb {
    /// Opens `path` read-only after checking it is a whole SQLite database.
    pub(crate) fn open(path: &Path) -> Result<Self> {
        check_header(path)?;
        let absolute = fs::canonicalize(path).map_err(|e| io_error(path, "resolving", e))?;
        let text = absolute.to_str().ok_or_else(|| {
            Error::invalid(format!("the path {} is not valid UTF-8", path.display()))
        })?;
        // With a journal or WAL beside the file its committed state may be
        // spread over both, and SQLite cannot read them without writing
        // beside the file: it creates or updates the `-shm` index of a WAL,
        // and a read-only open fails on a journal that needs rolling back. So
        // the file and its sidecars are read from a private copy instead.
        // Otherwise `immutable=1` guarantees SQLite neither locks nor writes
        // anything.
        let sidecar = |suffix: &str| {
            let mut name = absolute.clone().into_os_string();
            name.push(suffix);
            PathBuf::from(name)
        };
        let non_empty = |p: &Path| fs::metadata(p).is_ok_and(|m| m.len() > 0);
        let (wal, journal) = (sidecar("-wal"), sidecar("-journal"));
        if non_empty(&journal) || non_empty(&wal) {
            return ForeignDb::open_private_copy(path, &absolute, &wal, &journal);
        }
        let uri = format!("file:{}?mode=ro&immutable=1", uri_escape(text));
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_URI
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn =
            Connection::open_with_flags(&uri, flags).map_err(|e| sql_error(path, "opening", e))?;
        let db = ForeignDb {
            conn,
            path: path.to_owned(),
            _copy: None,
        };
        db.quick_check()?;
        Ok(db)
    }

    /// Opens a copy of the file and its `-wal` or `-journal`, made in a new
    /// private directory (mode 0700, files 0600) and removed when the
    /// returned value is dropped, so that SQLite can recover the committed
    /// state there without touching the original.
    fn open_private_copy(path: &Path, absolute: &Path, wal: &Path, journal: &Path) -> Result<Self> {
        let copy = PrivateCopy::new().map_err(|e| {
            Error::backend(
                "file system",
                io::Error::new(
                    e.kind(),
                    format!(
                        "cannot make a private copy of {} in the temporary directory to read \
                         it with its journal: {e}",
                        show_path(path)
                    ),
                ),
            )
        })?;
        let db_copy = copy.dir.join("session.db");
        copy_private(absolute, &db_copy).map_err(|e| io_error(path, "copying", e))?;
        for (sidecar, suffix) in [(wal, "-wal"), (journal, "-journal")] {
            if sidecar.exists() {
                copy_private(sidecar, &copy.dir.join(format!("session.db{suffix}")))
                    .map_err(|e| io_error(path, "copying", e))?;
            }
        }
        let conn = Connection::open_with_flags(
            &db_copy,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| sql_error(path, "opening", e))?;
        conn.execute_batch("PRAGMA query_only = 1")
            .map_err(|e| sql_error(path, "opening", e))?;
        let db = ForeignDb {
            conn,
            path: path.to_owned(),
            _copy: Some(copy),
        };
        db.quick_check()?;
        Ok(db)
    }

    /// How errors name the file.
    pub(crate) fn what(&self) -> String {
        describe(&self.path)
    }

    fn err(&self, e: rusqlite::Error) -> Error {
        sql_error(&self.path, "reading", e)
    }

    /// `Corrupt`: the file is readable but not what it must be.
    pub(crate) fn corrupt(&self, message: impl Into<String>) -> Error {
        Error::corrupt(self.what(), message)
    }

    /// `Corrupt` for a file of another format than the reader expected.
    pub(crate) fn not_a(&self, expected: &str, found: &ForeignFormat) -> Error {
        let found = found.to_string();
        let article = if found.starts_with(['a', 'e', 'i', 'o', 'u', 'A', 'E', 'I', 'O', 'U'])
            || found.starts_with("mtsession")
            || found.starts_with("SQLite")
        {
            "an"
        } else {
            "a"
        };
        self.corrupt(format!("expected {expected}, found {article} {found}"))
    }

    fn quick_check(&self) -> Result<()> {
        let problems: Vec<String> = (|| {
            let mut stmt = self.conn.prepare("PRAGMA quick_check(5)")?;
            let rows = stmt.query_map([], |row| row.get::<_, String>(0))?;
            rows.collect::<rusqlite::Result<Vec<String>>>()
        })()
        .map_err(|e| sql_error(&self.path, "checking", e))?;
        if problems.len() == 1 && problems[0] == "ok" {
            return Ok(());
        }
        Err(self.corrupt(format!(
            "SQLite's integrity check failed: {}",
            problems.join("; ")
        )))
    }

    /// `PRAGMA application_id` (mtsession's own stores set theirs).
    pub(crate) fn application_id(&self) -> Result<i32> {
        self.conn
            .query_row("PRAGMA application_id", [], |row| row.get(0))
            .map_err(|e| self.err(e))
    }

    /// `PRAGMA user_version` (grammers keeps its schema version there).
    pub(crate) fn user_version(&self) -> Result<i64> {
        self.conn
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .map_err(|e| self.err(e))
    }

    /// The names of the file's tables, without SQLite's own.
    pub(crate) fn tables(&self) -> Result<BTreeSet<String>> {
        (|| {
            let mut stmt = self.conn.prepare(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'",
            )?;
            let rows = stmt.query_map([], |row| row.get::<_, String>(0))?;
            rows.collect::<rusqlite::Result<BTreeSet<String>>>()
        })()
        .map_err(|e| self.err(e))
    }

    /// The column names of `table`, in order.
    pub(crate) fn columns(&self, table: &str) -> Result<Vec<String>> {
        (|| {
            let mut stmt = self
                .conn
                .prepare(&format!("PRAGMA table_info({})", quote(table)))?;
            let rows = stmt.query_map([], |row| row.get::<_, String>(1))?;
            rows.collect::<rusqlite::Result<Vec<String>>>()
        })()
        .map_err(|e| self.err(e))
    }

    /// The number of rows of `table`.
    pub(crate) fn count(&self, table: &str) -> Result<u64> {
        let n: i64 = self
            .conn
            .query_row(
                &format!("SELECT count(*) FROM {}", quote(table)),
                [],
                |row| row.get(0),
            )
            .map_err(|e| self.err(e))?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// The schema version: the first row of `table.column`, as the libraries
    /// read it. It must be an integer.
    pub(crate) fn version(&self, table: &str, column: &str) -> Result<i64> {
        let rows = self.select(table, &[column], "rowid")?;
        match rows.first().map(|r| &r[0]) {
            Some(Value::Integer(v)) => Ok(*v),
            Some(other) => Err(self.corrupt(format!(
                "the {table} table holds {} instead of an integer schema version",
                describe_value(other)
            ))),
            None => Err(self.corrupt(format!(
                "the {table} table is empty; expected the schema version"
            ))),
        }
    }

    /// Every row of `table` as the given columns (a column the table lacks
    /// reads as NULL), ordered by `order`.
    pub(crate) fn select(
        &self,
        table: &str,
        columns: &[&str],
        order: &str,
    ) -> Result<Vec<Vec<Value>>> {
        let present = self.columns(table)?;
        let list: Vec<String> = columns
            .iter()
            .map(|c| {
                if present.iter().any(|p| p == c) {
                    quote(c)
                } else {
                    "NULL".to_owned()
                }
            })
            .collect();
        let sql = format!(
            "SELECT {} FROM {} ORDER BY {order}",
            list.join(", "),
            quote(table)
        );
        (|| {
            let mut stmt = self.conn.prepare(&sql)?;
            let n = columns.len();
            let rows =
                stmt.query_map([], |row| (0..n).map(|i| row.get::<_, Value>(i)).collect())?;
            rows.collect::<rusqlite::Result<Vec<Vec<Value>>>>()
        })()
        .map_err(|e| self.err(e))
    }

    /// Checks that `table` exists and has every column of `required`.
    pub(crate) fn require(
        &self,
        tables: &BTreeSet<String>,
        table: &str,
        required: &[&str],
        context: &str,
    ) -> Result<()> {
        if !tables.contains(table) {
            return Err(self.corrupt(format!("{context} has no {table} table")));
        }
        let present = self.columns(table)?;
        let missing: Vec<&str> = required
            .iter()
            .copied()
            .filter(|c| !present.iter().any(|p| p == c))
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(self.corrupt(format!(
                "{context} lacks column(s) {} in its {table} table (found: {})",
                missing.join(", "),
                present.join(", ")
            )))
        }
    }
}

/// Quotes an identifier for SQL.
pub(crate) fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Escapes a path for an SQLite `file:` URI.
fn uri_escape(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for c in path.chars() {
        match c {
            '%' => out.push_str("%25"),
            '?' => out.push_str("%3f"),
            '#' => out.push_str("%23"),
            _ => out.push(c),
        }
    }
    out
}

/// Checks the header: SQLite's magic, a sane page size, and a length that
/// holds every page the header announces.
fn check_header(path: &Path) -> Result<()> {
    let meta = fs::metadata(path).map_err(|e| io_error(path, "reading", e))?;
    if !meta.is_file() {
        return Err(Error::invalid(format!(
            "{} is {}, not a session file",
            show_path(path),
            file_kind(&meta)
        )));
    }
    let len = meta.len();
    if len == 0 {
        return Err(Error::corrupt(
            describe(path),
            "the file is empty (0 bytes); expected an SQLite database",
        ));
    }
    let mut header = [0u8; 100];
    let mut file = File::open(path).map_err(|e| io_error(path, "opening", e))?;
    let mut read = 0;
    while read < header.len() {
        match file.read(&mut header[read..]) {
            Ok(0) => break,
            Ok(n) => read += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io_error(path, "reading", e)),
        }
    }
    if read < 16 || &header[..16] != SQLITE_MAGIC {
        let start = &header[..read.min(16)];
        let message = if looks_like_base64(start) {
            // Never echo it: it may be a string session, auth key included.
            format!(
                "not an SQLite database: the file ({len} bytes) holds text that looks like \
                 base64; if it is a string session, pass it as string:STRING"
            )
        } else {
            format!(
                "not an SQLite database: the file ({len} bytes) starts with {} instead of \
                 \"SQLite format 3\\0\"",
                show_bytes(start)
            )
        };
        return Err(Error::corrupt(describe(path), message));
    }
    if read < 100 {
        return Err(Error::corrupt(
            describe(path),
            format!("truncated SQLite database: {len} bytes, shorter than the 100-byte header"),
        ));
    }
    let raw_page = u32::from(u16::from_be_bytes([header[16], header[17]]));
    let page_size = if raw_page == 1 { 65536 } else { raw_page };
    if !(512..=65536).contains(&page_size) || !page_size.is_power_of_two() {
        return Err(Error::corrupt(
            describe(path),
            format!("corrupt SQLite header: page size {raw_page}"),
        ));
    }
    let page_size = u64::from(page_size);
    let be32 = |at: usize| {
        u32::from_be_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]])
    };
    let pages = u64::from(be32(28));
    // The page count is valid only when "version-valid-for" equals the change counter.
    if pages > 0 && be32(92) == be32(24) && len < pages * page_size {
        return Err(Error::corrupt(
            describe(path),
            format!(
                "truncated SQLite database: the header announces {pages} pages of {page_size} bytes ({} bytes), the file has {len} bytes",
                pages * page_size
            ),
        ));
    }
    if len % page_size != 0 {
        return Err(Error::corrupt(
            describe(path),
            format!(
                "truncated SQLite database: {len} bytes is not a whole number of {page_size}-byte pages"
            ),
        ));
    }
    Ok(())
}

/// What a non-regular file is, for messages.
fn file_kind(meta: &fs::Metadata) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        let t = meta.file_type();
        if t.is_fifo() {
            return "a FIFO (named pipe)";
        }
        if t.is_char_device() {
            return "a character device";
        }
        if t.is_block_device() {
            return "a block device";
        }
        if t.is_socket() {
            return "a socket";
        }
    }
    if meta.is_dir() {
        "a directory"
    } else {
        "not a regular file"
    }
}

/// Whether bytes are all in a base64 alphabet (standard or url-safe), as the
/// start of a string session saved in a file would be.
fn looks_like_base64(bytes: &[u8]) -> bool {
    bytes.len() >= 8
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'-' | b'_' | b'='))
}

fn show_bytes(bytes: &[u8]) -> String {
    let mut out = String::from("\"");
    for &b in bytes {
        if b.is_ascii_graphic() || b == b' ' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out.push('"');
    out
}

/// How a value is described in messages (never its bytes: blobs may be keys).
pub(crate) fn describe_value(v: &Value) -> String {
    match v {
        Value::Null => "NULL".to_owned(),
        Value::Integer(i) => format!("the integer {i}"),
        Value::Real(r) => format!("the real {r}"),
        Value::Text(t) if t.chars().count() <= 40 => format!("the text {t:?}"),
        Value::Text(t) => format!("a text of {} characters", t.chars().count()),
        Value::Blob(b) => format!("a blob of {} bytes", b.len()),
    }
}

/// An integer cell, tolerating the storage classes the libraries produce:
/// integers, reals without a fraction, and text holding an integer.
/// `Ok(None)` for NULL; `Err` describes anything else.
pub(crate) fn int(v: &Value) -> std::result::Result<Option<i64>, String> {
    match v {
        Value::Null => Ok(None),
        Value::Integer(i) => Ok(Some(*i)),
        Value::Real(r) if r.fract() == 0.0 && r.abs() < 9.0e18 => Ok(Some(*r as i64)),
        Value::Text(t) => t
            .trim()
            .parse::<i64>()
            .map(Some)
            .map_err(|_| format!("{} where an integer belongs", describe_value(v))),
        other => Err(format!(
            "{} where an integer belongs",
            describe_value(other)
        )),
    }
}

/// Like [`int`], but a real is truncated toward zero (Telethon stores dates
/// as `datetime.timestamp()` and reads them back with `int()`).
pub(crate) fn int_or_real(v: &Value) -> std::result::Result<Option<i64>, String> {
    match v {
        Value::Real(r) if r.is_finite() && r.abs() < 9.0e18 => Ok(Some(r.trunc() as i64)),
        other => int(other),
    }
}

/// A 32-bit integer cell (pts, qts, seq, dates).
pub(crate) fn int32(v: &Value) -> std::result::Result<Option<i32>, String> {
    match int_or_real(v)? {
        None => Ok(None),
        Some(i) => i32::try_from(i)
            .map(Some)
            .map_err(|_| format!("{i} does not fit in 32 bits")),
    }
}

/// A text cell; `Ok(None)` for NULL.
pub(crate) fn text(v: &Value) -> std::result::Result<Option<String>, String> {
    match v {
        Value::Null => Ok(None),
        Value::Text(t) => Ok(Some(t.clone())),
        Value::Integer(i) => Ok(Some(i.to_string())),
        other => Err(format!("{} where text belongs", describe_value(other))),
    }
}

/// A blob cell; `Ok(None)` for NULL. Text is accepted as its UTF-8 bytes.
pub(crate) fn blob(v: &Value) -> std::result::Result<Option<Vec<u8>>, String> {
    match v {
        Value::Null => Ok(None),
        Value::Blob(b) => Ok(Some(b.clone())),
        Value::Text(t) => Ok(Some(t.as_bytes().to_vec())),
        other => Err(format!("{} where a blob belongs", describe_value(other))),
    }
}

/// A phone cell: digits from an integer, an integral real or text.
pub(crate) fn phone(v: &Value) -> std::result::Result<Option<String>, String> {
    match v {
        Value::Null => Ok(None),
        Value::Integer(i) if *i > 0 => Ok(Some(i.to_string())),
        Value::Real(r) if r.fract() == 0.0 && *r > 0.0 && *r < 9.0e18 => {
            Ok(Some((*r as i64).to_string()))
        }
        Value::Text(t) if t.trim().is_empty() => Ok(None),
        Value::Text(t) => session_core::model::normalize_phone(t)
            .map(Some)
            .map_err(|e| format!("phone {t:?} rejected: {e}")),
        other => Err(format!(
            "{} where a phone number belongs",
            describe_value(other)
        )),
    }
}

/// A file being written: created beside its destination with mode 0600,
/// moved into place by [`NewFile::commit`], removed if dropped before.
pub(crate) struct NewFile {
    temp: PathBuf,
    dest: PathBuf,
    committed: bool,
}

static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl NewFile {
    /// Refuses an existing destination unless `overwrite`; creates the
    /// temporary file.
    pub(crate) fn create(dest: &Path, overwrite: bool) -> Result<Self> {
        if !overwrite && fs::symlink_metadata(dest).is_ok() {
            return Err(Error::AlreadyExists {
                what: describe(dest),
            });
        }
        let name = dest
            .file_name()
            .ok_or_else(|| Error::invalid(format!("{} does not name a file", dest.display())))?;
        let dir = match dest.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
            _ => PathBuf::from("."),
        };
        match fs::metadata(&dir) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => {
                return Err(Error::invalid(format!(
                    "cannot write {}: {} is not a directory",
                    dest.display(),
                    dir.display()
                )));
            }
            Err(_) => {
                return Err(Error::NotFound {
                    what: format!(
                        "directory {} (where {} would be written)",
                        dir.display(),
                        dest.display()
                    ),
                });
            }
        }
        if fs::metadata(dest).is_ok_and(|m| m.is_dir()) {
            return Err(Error::invalid(format!(
                "{} is a directory; give the path of a session file",
                dest.display()
            )));
        }
        let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let mut temp_name = std::ffi::OsString::from(".");
        temp_name.push(name);
        temp_name.push(format!(".{}-{n}.tmp", std::process::id()));
        let temp = dir.join(temp_name);
        session_core::files::private_file_options()
            .open(&temp)
            .map_err(|e| io_error(&temp, "creating", e))?;
        Ok(NewFile {
            temp,
            dest: dest.to_owned(),
            committed: false,
        })
    }

    /// Opens the temporary file for writing.
    pub(crate) fn connect(&self) -> Result<Connection> {
        let conn = Connection::open_with_flags(
            &self.temp,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| sql_error(&self.dest, "writing", e))?;
        conn.execute_batch("PRAGMA journal_mode = DELETE")
            .map_err(|e| sql_error(&self.dest, "writing", e))?;
        Ok(conn)
    }

    /// Flushes the file and moves it to its destination: atomically replacing
    /// it with `overwrite`, otherwise failing if it appeared meanwhile.
    pub(crate) fn commit(mut self, overwrite: bool) -> Result<()> {
        File::open(&self.temp)
            .and_then(|f| f.sync_all())
            .map_err(|e| io_error(&self.temp, "syncing", e))?;
        if overwrite {
            fs::rename(&self.temp, &self.dest).map_err(|e| io_error(&self.dest, "replacing", e))?;
        } else {
            match fs::hard_link(&self.temp, &self.dest) {
                Ok(()) => {
                    let _ = fs::remove_file(&self.temp);
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    return Err(Error::AlreadyExists {
                        what: describe(&self.dest),
                    });
                }
                Err(e) => return Err(io_error(&self.dest, "creating", e)),
            }
        }
        self.committed = true;
        Ok(())
    }
}

impl Drop for NewFile {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_file(&self.temp);
            let mut journal = self.temp.clone().into_os_string();
            journal.push("-journal");
            let _ = fs::remove_file(PathBuf::from(journal));
        }
    }
}

/// Runs `f` in one transaction on a new file's connection.
pub(crate) fn write_all(
    file: &NewFile,
    dest: &Path,
    f: impl FnOnce(&rusqlite::Transaction<'_>) -> rusqlite::Result<()>,
) -> Result<()> {
    let mut conn = file.connect()?;
    let tx = conn
        .transaction()
        .map_err(|e| sql_error(dest, "writing", e))?;
    f(&tx).map_err(|e| sql_error(dest, "writing", e))?;
    tx.commit().map_err(|e| sql_error(dest, "writing", e))?;
    conn.close()
        .map_err(|(_, e)| sql_error(dest, "closing", e))?;
    Ok(())
}
