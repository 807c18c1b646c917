//! The Redis scripts behind the shared counters (`limiter::RedisCounters`): each is one
//! round trip covering every counter of a call, and applies the arithmetic of
//! `switchyard_core::limits` (`data-plane/tests/limiter.rs` checks them against it).

/// One round trip: check every counter, then reserve on all of them, or on none.
/// KEYS[1] is the primed marker, KEYS[2] the hold; ARGV[1] the generation this
/// replica put its share into. Answers an array whose last element is the verdict:
/// -1 without the marker (nothing is admitted: the counters may have lost the
/// period's spend), -2 when the generation is not this replica's (it must put its
/// share back first), -3 while the hold lasts (those three alone), 0 when admitted,
/// else the 1-based index of the first counter that does not fit; before it, each
/// counter's value after the reservation (admitted) or as it stands (refused), for
/// the caller's quota headers. ARGV holds, per counter after the first argument:
/// limit, reservation, expiry (Unix ms).
pub(super) const ADMIT_LUA: &str = r"-- switchyard admit v4
local generation = redis.call('GET', KEYS[1])
if not generation then
  return {-1}
end
if generation ~= ARGV[1] then
  return {-2}
end
if redis.call('EXISTS', KEYS[2]) == 1 then
  return {-3}
end
local n = #KEYS - 2
local values = {}
local refused = 0
for i = 1, n do
  local current = tonumber(redis.call('GET', KEYS[i + 2]) or '0')
  values[i] = current
  if refused == 0 and current + tonumber(ARGV[3 * i]) > tonumber(ARGV[3 * i - 1]) then
    refused = i
  end
end
if refused == 0 then
  for i = 1, n do
    local reserve = tonumber(ARGV[3 * i])
    if reserve > 0 then
      values[i] = redis.call('INCRBY', KEYS[i + 2], reserve)
      redis.call('PEXPIREAT', KEYS[i + 2], ARGV[3 * i + 1])
    end
  end
end
values[n + 1] = refused
return values
";

/// One round trip, once per loss of data: add the rebuilt spend (and the priming
/// replica's own share of the rate windows) to each counter, set the primed marker
/// (KEYS[1]) to a new generation (ARGV[1]) and the hold (KEYS[2]) for ARGV[2] ms. A
/// replica that comes second finds the marker and changes nothing, so spend is never
/// added twice. ARGV holds, per counter after the first two arguments: value, expiry
/// (Unix ms).
pub(super) const PRIME_LUA: &str = r"-- switchyard prime v3
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
for i = 3, #KEYS do
  redis.call('INCRBY', KEYS[i], ARGV[2 * i - 3])
  redis.call('PEXPIREAT', KEYS[i], ARGV[2 * i - 2])
end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
return 1
";

/// One round trip, once per replica and generation: add this replica's share of the
/// rate windows to the counters, only if the generation (KEYS[1]) is still ARGV[1];
/// else nothing (another loss came between). ARGV holds, per counter after the
/// first argument: value, expiry (Unix ms).
pub(super) const RESTORE_LUA: &str = r"-- switchyard restore v1
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
for i = 2, #KEYS do
  redis.call('INCRBY', KEYS[i], ARGV[2 * i - 2])
  redis.call('PEXPIREAT', KEYS[i], ARGV[2 * i - 1])
end
return 1
";

/// One round trip: replace each reservation by the actual amount, never below zero.
/// ARGV holds, per key: reserved, actual, expiry (Unix ms).
pub(super) const SETTLE_LUA: &str = r"-- switchyard settle v1
for i = 1, #KEYS do
  local reserved = tonumber(ARGV[3 * i - 2])
  local actual = tonumber(ARGV[3 * i - 1])
  if actual ~= reserved then
    local value = tonumber(redis.call('GET', KEYS[i]) or '0') + actual - reserved
    if value < 0 then value = 0 end
    redis.call('SET', KEYS[i], string.format('%d', value), 'PXAT', ARGV[3 * i])
  end
end
return 0
";
