//! The GCRA decision in Redis: one Lua script, Redis's clock, one round trip.

use std::time::Duration;

use redis::aio::ConnectionManager;

use super::super::gcra::Quota;

/// The script. Per quota `i`: `KEYS[i]` holds the bucket's theoretical arrival time as
/// `"seconds:nanoseconds"` since the Unix epoch (Redis's `TIME`), `ARGV[2i]` the token
/// interval in nanoseconds and `ARGV[2i + 1]` the burst; `ARGV[1]` is the request's cost and
/// the last argument the lease: with one quota, an admitted request also takes up to
/// `lease - 1` more tokens if the bucket has them, for the caller to hand out locally.
///
/// Times are kept relative to `TIME` while deciding, so every number the script computes
/// stays below 2^53 and Lua's doubles hold it exactly: the decision is the in-memory one,
/// to the nanosecond. All quotas admit, or none is charged. Each key expires when its
/// bucket would be full again, never sooner.
///
/// Stored values are written by concatenation: both parts are integers below 10^14, which
/// Lua prints exactly.
///
/// Returns `{admitted, retry_after_ns, remaining, next_ns, quota, granted}` (`granted`:
/// tokens taken, the request's own included): on a refusal, the
/// wait and the state of the quota that refused longest; on an admission, the state of the
/// first quota after the charge.
pub(crate) const GCRA: &str = r"
local t = redis.call('TIME')
local now_s = tonumber(t[1])
local now_n = tonumber(t[2]) * 1000
local cost = tonumber(ARGV[1])
local lease = tonumber(ARGV[#ARGV])

local function snapshot(owed, interval, burst)
  if owed <= 0 then return burst, 0 end
  local free = interval * burst - owed
  if free < 0 then return 0, owed - interval * burst + interval end
  local q = math.floor(free / interval)
  if q * interval > free then q = q - 1 elseif (q + 1) * interval <= free then q = q + 1 end
  return q, interval - (free - q * interval)
end

local owed, nexts = {}, {}
local worst, worst_wait = 0, 0
for i = 1, #KEYS do
  local interval = tonumber(ARGV[2 * i])
  local burst = tonumber(ARGV[2 * i + 1])
  local o = 0
  local v = redis.call('GET', KEYS[i])
  if v then
    local c = string.find(v, ':', 1, true)
    local s, n = c and tonumber(string.sub(v, 1, c - 1)), c and tonumber(string.sub(v, c + 1))
    if s and n then
      o = (s - now_s) * 1e9 + (n - now_n)
      if o < 0 then o = 0 end
    end
  end
  local charged = math.min(math.max(cost, 1), burst)
  owed[i] = o
  nexts[i] = o + charged * interval
  local wait = nexts[i] - interval * burst
  if wait > worst_wait then worst, worst_wait = i, wait end
end

if worst > 0 then
  local remaining, next_ns = snapshot(owed[worst], tonumber(ARGV[2 * worst]), tonumber(ARGV[2 * worst + 1]))
  return {0, worst_wait, remaining, next_ns, worst, 0}
end

local granted = 1
if lease > 1 and #KEYS == 1 then
  local interval, burst = tonumber(ARGV[2]), tonumber(ARGV[3])
  local extra = math.floor((interval * burst - nexts[1]) / interval)
  if extra * interval > interval * burst - nexts[1] then extra = extra - 1 end
  extra = math.max(0, math.min(lease - 1, extra))
  nexts[1] = nexts[1] + extra * interval
  granted = 1 + extra
end

for i = 1, #KEYS do
  local total = now_n + nexts[i]
  local s = now_s + math.floor(total / 1e9)
  local n = total % 1e9
  local ttl = math.max(1, math.ceil(nexts[i] / 1e6))
  redis.call('SET', KEYS[i], s .. ':' .. n, 'PX', ttl)
end
local remaining, next_ns = snapshot(nexts[1], tonumber(ARGV[2]), tonumber(ARGV[3]))
return {1, 0, remaining, next_ns, 1, granted}
";

/// Largest bucket (`burst · interval`) a shared limiter accepts: 2^52 ns, about 52 days, so
/// the script's arithmetic stays exact in Lua's doubles with room for one more bucket.
pub(crate) const MAX_TOLERANCE_NANOS: u64 = 1 << 52;

/// What Redis decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Decision {
    pub(crate) admitted: bool,
    pub(crate) retry_after: Duration,
    pub(crate) remaining: u64,
    pub(crate) next: Duration,
    /// Which quota (0-based) the state is about.
    pub(crate) quota: usize,
    /// Tokens taken for requests of cost 1: this one and those leased (0 on a refusal).
    pub(crate) granted: u64,
}

/// The script, with its SHA1 computed once.
#[derive(Clone, Debug)]
pub(crate) struct Script {
    sha: String,
}

impl Script {
    pub(crate) fn new() -> Self {
        Self {
            sha: redis::Script::new(GCRA).get_hash().to_owned(),
        }
    }

    /// Decides a request of `cost` against `keys`, one per quota. `EVALSHA` first; when
    /// Redis does not have the script (a restart, `SCRIPT FLUSH`, a failover), `EVAL`, which
    /// also loads it: two round trips at most.
    pub(crate) async fn decide(
        &self,
        conn: &mut ConnectionManager,
        keys: &[Vec<u8>],
        cost: u32,
        quotas: &[Quota],
        lease: u32,
    ) -> redis::RedisResult<Decision> {
        let mut args: Vec<u64> = Vec::with_capacity(2 + 2 * quotas.len());
        args.push(u64::from(cost));
        for quota in quotas {
            args.push(crate::clock::duration_nanos(quota.interval()));
            args.push(u64::from(quota.burst()));
        }
        args.push(u64::from(lease));
        let mut evalsha = redis::cmd("EVALSHA");
        evalsha.arg(&self.sha).arg(keys.len()).arg(keys).arg(&args);
        let reply: Result<Vec<u64>, redis::RedisError> = evalsha.query_async(conn).await;
        let reply = match reply {
            Err(err)
                if err.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) =>
            {
                tracing::debug!("shared rate limit script not in Redis; sending it with EVAL");
                let mut eval = redis::cmd("EVAL");
                eval.arg(GCRA).arg(keys.len()).arg(keys).arg(&args);
                eval.query_async(conn).await?
            }
            other => other?,
        };
        match reply.as_slice() {
            &[admitted, retry_after, remaining, next, quota, granted] => Ok(Decision {
                admitted: admitted == 1,
                retry_after: Duration::from_nanos(retry_after),
                remaining,
                next: Duration::from_nanos(next),
                quota: usize::try_from(quota.saturating_sub(1)).unwrap_or(0),
                granted,
            }),
            _ => Err(redis::RedisError::from((
                redis::ErrorKind::Parse,
                "unexpected reply from the rate limit script",
            ))),
        }
    }
}
