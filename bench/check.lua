-- bench/check.lua — wrk script of bench/run.sh: sends the scenario's requests and
-- counts every answer, so the script can fail a run that was not what it claims.
--
-- wrk ... -s bench/check.lua URL -- MODE HIT_PATH MISS_PREFIX WANT_TIER
--   MODE        hit: every request GET HIT_PATH
--               mix: every 10th request a new key MISS_PREFIX<n>, the others HIT_PATH
--               miss: every request a new key MISS_PREFIX<n>
--   MISS_PREFIX unique per run (run.sh puts scenario, server, round and a nonce in it),
--               so a "new key" was never requested before from any server
--   WANT_TIER   the X-Cache-Tier a hit must carry (cachecar), "-" for none
--
-- After the run it prints one line that run.sh parses:
--   CHECK total=N non200=N hit=N miss=N none=N other=N tier_bad=N
-- hit/miss: X-Cache (or X-Cache-Status) starting with HIT / MISS; none: no such header
-- (direct to the origin); other: any other value (STALE, EXPIRED, BYPASS, ...).

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  mode = args[1] or "hit"
  hit_path = args[2] or "/"
  miss_prefix = args[3] or "/miss/"
  want_tier = args[4] or "-"
  n = 0
  total, non200, hit, miss, none, other, tier_bad = 0, 0, 0, 0, 0, 0, 0
  hit_req = wrk.format("GET", hit_path)
end

function request()
  n = n + 1
  if mode == "miss" or (mode == "mix" and n % 10 == 0) then
    return wrk.format("GET", miss_prefix .. n)
  end
  return hit_req
end

function response(status, headers, body)
  total = total + 1
  if status ~= 200 then non200 = non200 + 1 end
  local x = headers["X-Cache"] or headers["x-cache"] or headers["X-Cache-Status"]
  if x == nil then
    none = none + 1
  elseif x:sub(1, 3) == "HIT" then
    hit = hit + 1
    if want_tier ~= "-" then
      local t = headers["X-Cache-Tier"] or headers["x-cache-tier"]
      if t ~= want_tier then tier_bad = tier_bad + 1 end
    end
  elseif x:sub(1, 4) == "MISS" then
    miss = miss + 1
  else
    other = other + 1
  end
end

function done(summary, latency, requests)
  local sum = { total = 0, non200 = 0, hit = 0, miss = 0, none = 0, other = 0, tier_bad = 0 }
  for _, t in ipairs(threads) do
    for k, _ in pairs(sum) do sum[k] = sum[k] + (t:get(k) or 0) end
  end
  io.write(string.format("CHECK total=%d non200=%d hit=%d miss=%d none=%d other=%d tier_bad=%d\n",
    sum.total, sum.non200, sum.hit, sum.miss, sum.none, sum.other, sum.tier_bad))
end
