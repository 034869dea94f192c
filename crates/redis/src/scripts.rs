//! The Lua scripts. Each runs atomically on the server; `redis::Script`
//! sends them by SHA-1 (`EVALSHA`) and loads them again after a server
//! restart. Session keys are passed in `keys::SESSION_SUFFIXES` order.

use std::sync::LazyLock;

use redis::Script;

/// Guarded hash writes on one session.
///
/// KEYS[1]: meta (must exist, else returns 0); KEYS[2..]: hashes to change.
/// ARGV[1]: now in ms, or '' to leave `updated` alone; then for each
/// KEYS[i >= 2]: clear ('1' deletes the hash first), n_del, fields...,
/// n_set, field, value, ...
pub(crate) static WRITE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
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
  local old = tonumber(redis.call('HGET', KEYS[1], 'updated') or '0') or 0
  if tonumber(ARGV[1]) > old then redis.call('HSET', KEYS[1], 'updated', ARGV[1]) end
end
return 1
",
    )
});

/// Creates or replaces a whole session.
///
/// KEYS[1]: meta, KEYS[2]: the session index, KEYS[3..]: the session's other
/// hashes. ARGV[1]: name, ARGV[2]: 'create' (returns 0 if the session
/// exists) or 'import' (replaces it, keeping its creation time), ARGV[3]:
/// now in ms; then for KEYS[1] and each KEYS[i >= 3]: n, field, value, ...
pub(crate) static PUT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local exists = redis.call('EXISTS', KEYS[1]) == 1
if exists and ARGV[2] == 'create' then return 0 end
local created = ARGV[3]
if exists then created = redis.call('HGET', KEYS[1], 'created') or ARGV[3] end
redis.call('DEL', KEYS[1])
for i = 3, #KEYS do redis.call('DEL', KEYS[i]) end
local a = 4
local function fill(key)
  local n = tonumber(ARGV[a])
  a = a + 1
  local done = 0
  while done < n do
    local m = math.min(n - done, 256)
    local args = {}
    for _ = 1, m do
      args[#args + 1] = ARGV[a]
      args[#args + 1] = ARGV[a + 1]
      a = a + 2
    end
    redis.call('HSET', key, unpack(args))
    done = done + m
  end
end
fill(KEYS[1])
for i = 3, #KEYS do fill(KEYS[i]) end
redis.call('HSET', KEYS[1], 'created', created, 'updated', ARGV[3])
redis.call('ZADD', KEYS[2], 0, ARGV[1])
return 1
",
    )
});

/// Copies a session.
///
/// KEYS[1..n]: source hashes (meta first), KEYS[n+1..2n]: target hashes
/// (meta first), KEYS[2n+1]: the session index. ARGV[1]: target name,
/// ARGV[2]: '1' to overwrite, ARGV[3]: now in ms, ARGV[4]: '1' when source
/// and target are the same session. Returns -1 if the source is missing,
/// -2 if the target exists and may not be overwritten, 1 otherwise.
pub(crate) static COPY: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local n = (#KEYS - 1) / 2
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
if redis.call('EXISTS', KEYS[n + 1]) == 1 and ARGV[2] ~= '1' then return -2 end
if ARGV[4] == '1' then return 1 end
for i = 1, n do
  redis.call('DEL', KEYS[n + i])
  if redis.call('EXISTS', KEYS[i]) == 1 then redis.call('COPY', KEYS[i], KEYS[n + i]) end
end
local meta = KEYS[n + 1]
local old = tonumber(redis.call('HGET', meta, 'updated') or '0') or 0
redis.call('HSET', meta, 'created', ARGV[3])
if tonumber(ARGV[3]) > old then redis.call('HSET', meta, 'updated', ARGV[3]) end
redis.call('ZADD', KEYS[#KEYS], 0, ARGV[1])
return 1
",
    )
});

/// Merges a batch of peers, in order, with the rules of
/// `session_core::PeerTable::upsert`, moving usernames and phones to their
/// newest owner.
///
/// KEYS: meta, peers, uname, phone. ARGV: one JSON peer each (see
/// `codec::encode_peer`). Returns 0 if the session is missing.
pub(crate) static CACHE_PEERS: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local peers, unames, phones = KEYS[2], KEYS[3], KEYS[4]
local function list(t)
  if type(t) == 'table' then return t end
  return {}
end
local function drop_username(owner, key)
  local raw = redis.call('HGET', peers, owner)
  if not raw then return end
  local o = cjson.decode(raw)
  if type(o.u) ~= 'table' then return end
  local keys = list(o.k)
  local u, k = {}, {}
  for i, name in ipairs(o.u) do
    if keys[i] ~= key then
      u[#u + 1] = name
      k[#k + 1] = keys[i]
    end
  end
  o.u = u
  o.k = k
  redis.call('HSET', peers, owner, cjson.encode(o))
end
local function drop_phone(owner)
  local raw = redis.call('HGET', peers, owner)
  if not raw then return end
  local o = cjson.decode(raw)
  o.p = nil
  redis.call('HSET', peers, owner, cjson.encode(o))
end
for i = 1, #ARGV do
  local p = cjson.decode(ARGV[i])
  local id = p.i
  local m = p
  local old_keys, old_phone = {}, nil
  local raw = redis.call('HGET', peers, id)
  if raw then
    m = cjson.decode(raw)
    old_keys = list(m.k)
    old_phone = m.p
    if p.t ~= nil then m.t = p.t end
    if p.h ~= nil and not (p.m == true and m.h ~= nil and m.m ~= true) then
      m.h = p.h
      m.m = p.m
    end
    if p.u ~= nil then
      m.u = p.u
      m.k = p.k
    end
    if p.p ~= nil then m.p = p.p end
    if p.n ~= nil then m.n = p.n end
    if p.s ~= nil then m.s = p.s end
  end
  for _, key in ipairs(old_keys) do
    if redis.call('HGET', unames, key) == id then redis.call('HDEL', unames, key) end
  end
  if old_phone ~= nil and redis.call('HGET', phones, old_phone) == id then
    redis.call('HDEL', phones, old_phone)
  end
  for _, key in ipairs(list(m.k)) do
    local prev = redis.call('HGET', unames, key)
    redis.call('HSET', unames, key, id)
    if prev and prev ~= id then drop_username(prev, key) end
  end
  if m.p ~= nil then
    local prev = redis.call('HGET', phones, m.p)
    redis.call('HSET', phones, m.p, id)
    if prev and prev ~= id then drop_phone(prev) end
  end
  redis.call('HSET', peers, id, cjson.encode(m))
end
return 1
",
    )
});

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

/// Takes or renews a lease. The value is `{expires_ms}:{owner}` with a
/// matching `PX` expiry.
///
/// KEYS[1]: lease key. ARGV[1]: owner, ARGV[2]: TTL in ms, ARGV[3]: expiry
/// in ms since the epoch. Returns {1} when taken, {0, owner, expires_ms}
/// when another owner holds it.
pub(crate) static ACQUIRE_LEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local cur = redis.call('GET', KEYS[1])
if cur then
  local sep = string.find(cur, ':', 1, true)
  if sep then
    local owner = string.sub(cur, sep + 1)
    if owner ~= ARGV[1] then return {0, owner, string.sub(cur, 1, sep - 1)} end
  end
end
redis.call('SET', KEYS[1], ARGV[3] .. ':' .. ARGV[1], 'PX', ARGV[2])
return {1}
",
    )
});

/// Releases a lease held by ARGV[1]. Returns 1 if it was held by that
/// owner (and live), 0 otherwise.
pub(crate) static RELEASE_LEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local cur = redis.call('GET', KEYS[1])
if not cur then return 0 end
local sep = string.find(cur, ':', 1, true)
if sep and string.sub(cur, sep + 1) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
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
local values = {}
local i = 1
while i <= #ARGV do
  local chunk = {}
  for j = i, math.min(i + 999, #ARGV) do chunk[#chunk + 1] = ARGV[j] end
  local got = redis.call('HMGET', KEYS[2], unpack(chunk))
  for j = 1, #chunk do values[#values + 1] = got[j] end
  i = i + #chunk
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
