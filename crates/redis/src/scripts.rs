//! The Lua scripts. Each runs atomically on the server; `redis::Script`
//! sends them by SHA-1 (`EVALSHA`) and loads them again after a server
//! restart.
//!
//! The scripts persist; they decide nothing that core decides. Two places
//! keep an engine-native form of a core rule, each proven equal to core by a
//! test in `tests/backend.rs`: [`WRITE`] moves `updated` forward as
//! `SessionHeader::apply` does (the larger of the stored time and the
//! write's), and every session-level write checks that the session exists.
//! Peer writes are planned by `PeerBatch::plan` in Rust; [`PEER_APPLY`]
//! only applies the plan, after checking that what the plan was computed
//! from is unchanged.

use std::sync::LazyLock;

use redis::Script;

/// `int_greater(a, b)`: whether decimal integer text `a` is larger than
/// `b`, exactly for every i64 (Lua numbers are doubles, which are not).
const INT_GREATER: &str = r"
local function int_greater(a, b)
  local an, bn = string.sub(a, 1, 1) == '-', string.sub(b, 1, 1) == '-'
  if an ~= bn then return bn end
  local ad = an and string.sub(a, 2) or a
  local bd = bn and string.sub(b, 2) or b
  if ad == bd then return false end
  local gt
  if #ad ~= #bd then gt = #ad > #bd else gt = ad > bd end
  if an then return not gt end
  return gt
end
";

/// Guarded hash writes on one session.
///
/// KEYS[1]: meta (must exist, else returns 0); KEYS[2..]: hashes to change
/// (meta may be one of them). ARGV[1]: the write's time in ms, or '' to
/// leave `updated` alone; then for each KEYS[i >= 2]: clear ('1' deletes the
/// hash first), n_del, fields..., n_set, field, value, ...
pub(crate) static WRITE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r"{INT_GREATER}
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local a = 2
for i = 2, #KEYS do
  local key = KEYS[i]
  if ARGV[a] == '1' then redis.call('DEL', key) end
  local ndel = tonumber(ARGV[a + 1])
  a = a + 2
  for _ = 1, ndel do
    redis.call('HDEL', key, ARGV[a])
    a = a + 1
  end
  local nset = tonumber(ARGV[a])
  a = a + 1
  for _ = 1, nset do
    redis.call('HSET', key, ARGV[a], ARGV[a + 1])
    a = a + 2
  end
end
if ARGV[1] ~= '' then
  local old = redis.call('HGET', KEYS[1], 'updated') or '0'
  if int_greater(ARGV[1], old) then
    redis.call('HSET', KEYS[1], 'updated', ARGV[1])
  end
end
return 1
"
    ))
});

/// Fills hashes from `n, field, value, ...` runs of ARGV, `HSET`ting at
/// most 500 pairs per call straight from ARGV (Lua's `unpack` has a limit).
const FILL: &str = r"
local function fill(key, a)
  local n = tonumber(ARGV[a])
  a = a + 1
  while n > 0 do
    local m = math.min(n, 500)
    redis.call('HSET', key, unpack(ARGV, a, a + 2 * m - 1))
    a = a + 2 * m
    n = n - m
  end
  return a
end
";

/// Checks what a replacing write expects of the target session's `meta`.
/// ARGV[2]: 'absent' or 'present'; ARGV[3], ARGV[4]: the `created` and
/// `updated` text expected when present. Returns nil when the expectation
/// holds, else the reply to give: {0} (absent now) or {0, created, updated}.
const EXPECT: &str = r"
local function expect(meta)
  if redis.call('EXISTS', meta) == 0 then
    if ARGV[2] == 'absent' then return nil end
    return {0}
  end
  local now = redis.call('HMGET', meta, 'created', 'updated')
  local c, u = now[1] or '', now[2] or ''
  if ARGV[2] == 'present' and c == ARGV[3] and u == ARGV[4] then return nil end
  return {0, c, u}
end
";

/// Writes a whole session, replacing what it held.
///
/// KEYS[1]: meta, KEYS[2]: the session index, KEYS[3]: the schema key,
/// KEYS[4..]: the session's other hashes. ARGV[1]: name, ARGV[2..4]: what
/// is expected of the session now (see `EXPECT`: 'absent', or 'present' with
/// its `created` and `updated`), ARGV[5]: the schema version; then for
/// KEYS[1] and each KEYS[i >= 4]: n, field, value, ... (the meta pairs carry
/// the times core computed). Returns {1} when written, else what `EXPECT`
/// found, writing nothing.
pub(crate) static PUT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r"{FILL}{EXPECT}
local refused = expect(KEYS[1])
if refused then return refused end
redis.call('DEL', KEYS[1])
for i = 4, #KEYS do redis.call('DEL', KEYS[i]) end
local a = fill(KEYS[1], 6)
for i = 4, #KEYS do a = fill(KEYS[i], a) end
redis.call('ZADD', KEYS[2], 0, ARGV[1])
redis.call('SET', KEYS[3], ARGV[5], 'NX')
return {{1}}
"
    ))
});

/// Copies a session inside the server.
///
/// KEYS[1..n]: source keys (meta first), KEYS[n+1..2n]: target keys (meta
/// first), KEYS[2n+1]: the session index, KEYS[2n+2]: the schema key.
/// ARGV[1]: target name, ARGV[2..4]: what is expected of the target (see
/// `EXPECT`), ARGV[5], ARGV[6]: the target's `created` and `updated`,
/// ARGV[7]: the schema version. Returns {-1} if the source is missing, {1}
/// when copied, else what `EXPECT` found.
pub(crate) static COPY: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r"{EXPECT}
local n = (#KEYS - 2) / 2
if redis.call('EXISTS', KEYS[1]) == 0 then return {{-1}} end
local refused = expect(KEYS[n + 1])
if refused then return refused end
for i = 1, n do
  redis.call('DEL', KEYS[n + i])
  if redis.call('EXISTS', KEYS[i]) == 1 then redis.call('COPY', KEYS[i], KEYS[n + i]) end
end
redis.call('HSET', KEYS[n + 1], 'created', ARGV[5], 'updated', ARGV[6])
redis.call('ZADD', KEYS[2 * n + 1], 0, ARGV[1])
redis.call('SET', KEYS[2 * n + 2], ARGV[7], 'NX')
return {{1}}
"
    ))
});

/// Reads what a peer batch touches, and a digest of it.
///
/// The context is given in ARGV from `a` on as `n, ids..., n, username
/// keys..., n, phones...`. It is the stored records of those ids, the
/// owners of those keys and phones, and the records of owners that are not
/// among the ids. `context(a, ...)` reads the first three and where the
/// context ends in ARGV; `owners_apart` and `digest` derive the rest. The
/// digest covers every value read, so a later script can tell whether any
/// of it changed.
const CONTEXT: &str = r"
local function hmget(key, list, from, n)
  if n == 0 then return {} end
  if n <= 1000 then return redis.call('HMGET', key, unpack(list, from, from + n - 1)) end
  local out = {}
  local i = 0
  while i < n do
    local m = math.min(n - i, 1000)
    local got = redis.call('HMGET', key, unpack(list, from + i, from + i + m - 1))
    for j = 1, m do out[i + j] = got[j] end
    i = i + m
  end
  return out
end
local function context(a, peers, unames, phones)
  local ctx = {}
  ctx.ids_at, ctx.ids_n = a + 1, tonumber(ARGV[a])
  a = a + 1 + ctx.ids_n
  local keys_at, keys_n = a + 1, tonumber(ARGV[a])
  a = a + 1 + keys_n
  local phones_at, phones_n = a + 1, tonumber(ARGV[a])
  a = a + 1 + phones_n
  ctx.peers = peers
  ctx.rows = hmget(peers, ARGV, ctx.ids_at, ctx.ids_n)
  ctx.key_owners = hmget(unames, ARGV, keys_at, keys_n)
  ctx.phone_owners = hmget(phones, ARGV, phones_at, phones_n)
  return ctx, a
end
local function owners_apart(ctx)
  if ctx.extra then return end
  local seen, extra = {}, {}
  for i = ctx.ids_at, ctx.ids_at + ctx.ids_n - 1 do seen[ARGV[i]] = true end
  for _, list in ipairs({ctx.key_owners, ctx.phone_owners}) do
    for i = 1, #list do
      local owner = list[i]
      if owner and not seen[owner] then
        seen[owner] = true
        extra[#extra + 1] = owner
      end
    end
  end
  ctx.extra = extra
  ctx.extra_rows = hmget(ctx.peers, extra, 1, #extra)
end
local function digest(ctx)
  owners_apart(ctx)
  local parts = {}
  for _, list in ipairs({ctx.rows, ctx.key_owners, ctx.phone_owners, ctx.extra, ctx.extra_rows}) do
    parts[#parts + 1] = tostring(#list)
    for i = 1, #list do
      local v = list[i]
      if v then parts[#parts + 1] = #v .. ':' .. v else parts[#parts + 1] = '-' end
    end
  end
  return redis.sha1hex(table.concat(parts, ','))
end
local function any_stored(ctx)
  for _, list in ipairs({ctx.rows, ctx.key_owners, ctx.phone_owners}) do
    for i = 1, #list do
      if list[i] then return true end
    end
  end
  return false
end
";

/// Loads the context of a peer batch.
///
/// KEYS: meta, peers, uname, phone. ARGV: the context (see `CONTEXT`).
/// Returns {0} if the session is missing, else {1, digest, records of the
/// ids, records of the other owners} (a missing record is nil).
pub(crate) static PEER_CONTEXT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r"{CONTEXT}
if redis.call('EXISTS', KEYS[1]) == 0 then return {{0}} end
local ctx = context(1, KEYS[2], KEYS[3], KEYS[4])
local sum = digest(ctx)
return {{1, sum, ctx.rows, ctx.extra_rows}}
"
    ))
});

/// Whether the context read is the one a plan computed from an empty
/// context leaves behind: each id's record is the one the plan writes for
/// it, and each username key and phone is owned by the id the plan gives it.
/// `a` is where the plan starts in ARGV; the caller sends the flag asking
/// for this only when the plan's rows, added usernames and added phones are
/// the context's ids, keys and phones in the same order (and it removes
/// nothing), so entry `i` of each list pairs with entry `i` of the context.
const AS_PLANNED: &str = r"
local function as_planned(ctx, a)
  a = a + 1 + 2 * tonumber(ARGV[a])
  a = a + 1 + 2 * tonumber(ARGV[a])
  for _, list in ipairs({ctx.rows, ctx.key_owners, ctx.phone_owners}) do
    local n = tonumber(ARGV[a])
    if n ~= #list then return false end
    for i = 1, n do
      if list[i] ~= ARGV[a + 2 * i] then return false end
    end
    a = a + 1 + 2 * n
  end
  return true
end
";

/// Applies a `PeerPlan` if its context is what the plan was computed from.
///
/// KEYS: meta, peers, uname, phone. ARGV[1]: the digest `PEER_CONTEXT`
/// answered, or '' for a plan computed from an empty context (none of the
/// ids stored, none of the keys and phones owned); ARGV[2]: '1' to ask, for
/// a plan computed from an empty context, whether the context is the one
/// that plan writes (see `AS_PLANNED`), else '0'; then the context; then
/// the plan: n, (username key, id)... removed; n, (phone, id)... removed; n,
/// (id, record)... rows; n, (username key, id)... added; n, (phone, id)...
/// added. Removed entries are deleted only while they still name that id.
/// Returns 0 if the session is missing, 1 when applied, and otherwise,
/// writing nothing: 2 when asked and the context is the one the plan
/// writes, else the context as it is now: {digest, records of the ids,
/// records of the other owners} (as `PEER_CONTEXT` answers), when a plan
/// that assumed an empty context met one that is not, or the digest of the
/// context changed.
pub(crate) static PEER_APPLY: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r"{CONTEXT}{AS_PLANNED}{FILL}
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local ctx, a = context(3, KEYS[2], KEYS[3], KEYS[4])
if ARGV[1] == '' then
  if any_stored(ctx) then
    if ARGV[2] == '1' and as_planned(ctx, a) then return 2 end
    return {{digest(ctx), ctx.rows, ctx.extra_rows}}
  end
else
  local now = digest(ctx)
  if now ~= ARGV[1] then return {{now, ctx.rows, ctx.extra_rows}} end
end
for _, index in ipairs({{KEYS[3], KEYS[4]}}) do
  local n = tonumber(ARGV[a])
  a = a + 1
  for _ = 1, n do
    if redis.call('HGET', index, ARGV[a]) == ARGV[a + 1] then
      redis.call('HDEL', index, ARGV[a])
    end
    a = a + 2
  end
end
a = fill(KEYS[2], a)
a = fill(KEYS[3], a)
fill(KEYS[4], a)
return 1
"
    ))
});

/// An `EVALSHA` of `script` on `keys`, to which the caller appends ARGV.
/// Built straight into one command buffer (a `ScriptInvocation` keeps every
/// argument in an allocation of its own, then copies them all into one);
/// [`RedisStore::eval`](crate::store::RedisStore::eval) sends it.
pub(crate) fn call<K: AsRef<[u8]>>(script: &Script, keys: &[K]) -> redis::Cmd {
    let mut cmd = redis::cmd("EVALSHA");
    cmd.arg(script.get_hash()).arg(keys.len());
    for key in keys {
        cmd.arg(key.as_ref());
    }
    cmd
}

/// Looks a peer up through an index hash.
///
/// KEYS: meta, index (uname or phone), peers. ARGV[1]: the index key.
/// Returns {0} if the session is missing, {1} if no peer matches,
/// {1, record} otherwise.
pub(crate) static PEER_BY_INDEX: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('EXISTS', KEYS[1]) == 0 then return {0} end
local id = redis.call('HGET', KEYS[2], ARGV[1])
if not id then return {1} end
local raw = redis.call('HGET', KEYS[3], id)
if not raw then return {1} end
return {1, raw}
",
    )
});

/// Compare-and-set of a lease value.
///
/// KEYS[1]: the lease key. ARGV[1]: the value expected now ('' for none),
/// ARGV[2]: the value to store ('' deletes the key), ARGV[3]: its expiry in
/// ms. Returns {1} when done, {0, value now} (writing nothing) otherwise.
pub(crate) static LEASE_SWAP: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local now = redis.call('GET', KEYS[1]) or ''
if now ~= ARGV[1] then return {0, now} end
if ARGV[2] == '' then
  redis.call('DEL', KEYS[1])
else
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
end
return {1}
",
    )
});

/// Reads whole hashes of one session.
///
/// KEYS[1]: meta; KEYS[2..]: hashes to read. Returns {0} if the session is
/// missing, else {1, HGETALL KEYS[2], HGETALL KEYS[3], ...}.
pub(crate) static READ_HASHES: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('EXISTS', KEYS[1]) == 0 then return {0} end
local out = {1}
for i = 2, #KEYS do out[#out + 1] = redis.call('HGETALL', KEYS[i]) end
return out
",
    )
});

/// Reads fields of one hash of a session.
///
/// KEYS[1]: meta, KEYS[2]: the hash. ARGV: fields. Returns {0} if the
/// session is missing, else {1, {value or nil, ...}} in the order asked.
pub(crate) static READ_FIELDS: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('EXISTS', KEYS[1]) == 0 then return {0} end
local n = #ARGV
if n == 0 then return {1, {}} end
if n <= 1000 then return {1, redis.call('HMGET', KEYS[2], unpack(ARGV))} end
local values = {}
local i = 0
while i < n do
  local m = math.min(n - i, 1000)
  local got = redis.call('HMGET', KEYS[2], unpack(ARGV, i + 1, i + m))
  for j = 1, m do values[i + j] = got[j] end
  i = i + m
end
return {1, values}
",
    )
});

/// Counts the fields of one hash of a session.
///
/// KEYS[1]: meta, KEYS[2]: the hash. Returns -1 if the session is missing.
pub(crate) static COUNT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
return redis.call('HLEN', KEYS[2])
",
    )
});

/// Deletes a session.
///
/// KEYS[1..n]: the session's keys (meta first), KEYS[n+1]: the session
/// index. ARGV[1]: the name. Returns 1 if the session existed.
pub(crate) static DELETE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local existed = redis.call('EXISTS', KEYS[1])
for i = 1, #KEYS - 1 do redis.call('DEL', KEYS[i]) end
redis.call('ZREM', KEYS[#KEYS], ARGV[1])
return existed
",
    )
});
