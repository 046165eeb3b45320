//! The Lua scripts that change a stream's keys together, on the server's own clock
//! (`TIME`), so that no client's clock trims records or decides a lease.

use redis::Script;

/// Makes a stream: its settings hash, one empty Redis stream per partition (a leftover key
/// of the same name is removed first), its name in the set of streams. Returns 0 if the
/// stream exists.
///
/// KEYS: the set of streams, the settings hash, the partitions' keys.
/// ARGV: name, horizon (ms), partitions.
const CREATE: &str = r"
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
for i = 3, #KEYS do
  redis.call('DEL', KEYS[i])
  redis.call('XGROUP', 'CREATE', KEYS[i], 'cloudstream-init', '$', 'MKSTREAM')
  redis.call('XGROUP', 'DESTROY', KEYS[i], 'cloudstream-init')
end
redis.call('HSET', KEYS[2], 'horizon_ms', ARGV[2], 'partitions', ARGV[3], 'created_ms', now)
redis.call('SADD', KEYS[1], ARGV[1])
return 1
";

/// Deletes a stream with its partitions and leases, if the caller named every partition
/// the stream has now: -1 if there is no stream, -2 if its partition count changed (the
/// caller reads it again).
///
/// KEYS: the set of streams, the settings hash, the set of lease groups, the partitions'
/// keys. ARGV: name.
const DELETE: &str = r"
local n = redis.call('HGET', KEYS[2], 'partitions')
if not n then return -1 end
if tonumber(n) ~= #KEYS - 3 then return -2 end
for _, g in ipairs(redis.call('SMEMBERS', KEYS[3])) do
  redis.call('DEL', KEYS[2] .. ':leases:' .. g)
end
for i = 3, #KEYS do redis.call('DEL', KEYS[i]) end
redis.call('DEL', KEYS[2])
redis.call('SREM', KEYS[1], ARGV[1])
return 1
";

/// Checks an append's stream and partition, and trims the partition to the horizon by the
/// server's clock. Returns the partition count; errors `NOSTREAM`, `NOPARTITION <count>`.
///
/// KEYS: the settings hash, the partition's key. ARGV: the partition.
const GUARD: &str = r"
local m = redis.call('HMGET', KEYS[1], 'partitions', 'horizon_ms')
if not m[1] then return redis.error_reply('NOSTREAM') end
if tonumber(ARGV[1]) >= tonumber(m[1]) then
  return redis.error_reply('NOPARTITION ' .. m[1])
end
local t = redis.call('TIME')
local min = t[1] * 1000 + math.floor(t[2] / 1000) - tonumber(m[2])
if min > 0 then redis.call('XTRIM', KEYS[2], 'MINID', string.format('%d', min)) end
return tonumber(m[1])
";

/// Trims every partition of a stream to its horizon by the server's clock; returns how
/// many entries went. KEYS: the settings hash, the partitions' keys.
const TRIM: &str = r"
local h = redis.call('HGET', KEYS[1], 'horizon_ms')
if not h then return 0 end
local t = redis.call('TIME')
local min = t[1] * 1000 + math.floor(t[2] / 1000) - tonumber(h)
if min <= 0 then return 0 end
local gone = 0
for i = 2, #KEYS do
  gone = gone + redis.call('XTRIM', KEYS[i], 'MINID', string.format('%d', min))
end
return gone
";

/// Sets where consumer group `group` resumes in a partition (its last delivered id),
/// making the group if it has none. Error `NOSTREAM` if the partition is gone.
///
/// KEYS: the partition's key. ARGV: group, last delivered id.
const SET_ID: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return redis.error_reply('NOSTREAM') end
local r = redis.pcall('XGROUP', 'SETID', KEYS[1], ARGV[1], ARGV[2])
if type(r) == 'table' and r.err then
  redis.call('XGROUP', 'CREATE', KEYS[1], ARGV[1], ARGV[2])
end
return 1
";

/// Takes or renews leases for a member until the server's now + TTL: one answer (1 or 0)
/// per lease, granted when free, the member's, or expired.
///
/// KEYS: the group's lease hash, the stream's set of lease groups.
/// ARGV: group, member, TTL (ms), lease names...
const TAKE: &str = r"
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
redis.call('SADD', KEYS[2], ARGV[1])
local out = {}
for i = 4, #ARGV do
  local cur = redis.call('HGET', KEYS[1], ARGV[i])
  local ok = true
  if cur then
    local sep = string.find(cur, '|', 1, true)
    ok = string.sub(cur, 1, sep - 1) == ARGV[2] or tonumber(string.sub(cur, sep + 1)) <= now
  end
  if ok then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[2] .. '|' .. string.format('%d', now + tonumber(ARGV[3])))
  end
  out[#out + 1] = ok and 1 or 0
end
redis.call('PEXPIRE', KEYS[1], 7200000)
return out
";

/// Gives a lease back if the member holds it. KEYS: the lease hash. ARGV: name, member.
const RELEASE: &str = r"
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if cur and string.sub(cur, 1, string.find(cur, '|', 1, true) - 1) == ARGV[2] then
  redis.call('HDEL', KEYS[1], ARGV[1])
end
return 1
";

/// The leases unexpired by the server's clock, as `[name, member, ...]`.
/// KEYS: the lease hash.
const LIVE: &str = r"
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local all = redis.call('HGETALL', KEYS[1])
local out = {}
for i = 1, #all, 2 do
  local sep = string.find(all[i + 1], '|', 1, true)
  if tonumber(string.sub(all[i + 1], sep + 1)) > now then
    out[#out + 1] = all[i]
    out[#out + 1] = string.sub(all[i + 1], 1, sep - 1)
  end
end
return out
";

/// Sets the idle time of the entries among the given ids that this client holds (the group's
/// pending entries list names it): 0 keeps them in hand, `claim_idle_ms` gives them back for
/// the next pull of any member. Entries another member took over are left alone.
///
/// KEYS: the partition's key. ARGV: group, this client's consumer name, idle (ms), ids...
const REFRESH: &str = r"
local n = 0
for i = 4, #ARGV do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  if p[1] and p[1][2] == ARGV[2] then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'IDLE', ARGV[3], 'JUSTID')
    n = n + 1
  end
end
return n
";

/// The scripts, loaded once per backend (sent by hash, and in full when a server does not
/// know them yet).
pub(super) struct Scripts {
    pub(super) create: Script,
    pub(super) delete: Script,
    pub(super) guard: Script,
    pub(super) trim: Script,
    pub(super) set_id: Script,
    pub(super) take: Script,
    pub(super) release: Script,
    pub(super) live: Script,
    pub(super) refresh: Script,
}

impl Scripts {
    pub(super) fn new() -> Self {
        Scripts {
            create: Script::new(CREATE),
            delete: Script::new(DELETE),
            guard: Script::new(GUARD),
            trim: Script::new(TRIM),
            set_id: Script::new(SET_ID),
            take: Script::new(TAKE),
            release: Script::new(RELEASE),
            live: Script::new(LIVE),
            refresh: Script::new(REFRESH),
        }
    }
}
