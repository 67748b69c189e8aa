-- wrk script for bench/soak.sh: mixed traffic over keep-alive connections.
--   hits    GET /api/v1/videos?page=N       N from a small key set (stays cached)
--   misses  GET /api/v1/lookup?uuid=K       K from a large rotating key space (evicts)
--   writes  POST /api/v1/register           invalidates category `videos` (the hit set)
--           DELETE /api/v1/videos/{uuid}    invalidates `video:{uuid}` (one lookup key)
-- Mix (per mille) and key space come from the environment (soak.sh sets them); the
-- rest after hits and misses are writes, SOAK_REGISTER_PM of them registers. Registers
-- are rare on purpose: each one empties the hit set.
-- Counts responses by status class and X-Cache, per thread; done() sums them and
-- prints one "SOAK key=value ..." line soak.sh parses.

local threads = {}

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

local hit_pm = tonumber(os.getenv("SOAK_HIT_PM") or "600")
local miss_pm = tonumber(os.getenv("SOAK_MISS_PM") or "300")
local register_pm = tonumber(os.getenv("SOAK_REGISTER_PM") or "5")
local hot_keys = tonumber(os.getenv("SOAK_HOT_KEYS") or "50")
local cold_keys = tonumber(os.getenv("SOAK_COLD_KEYS") or "1000000")

local counter = 0

function init(args)
  -- Each thread walks the cold key space from its own offset so the threads do not
  -- request the same key at the same time (that would be coalesced, not a miss).
  counter = (id or 0) * 7919
  math.randomseed(os.time() + (id or 0))
  ok2xx, ok3xx, bad, hit, miss, other = 0, 0, 0, 0, 0, 0
  n_hit, n_miss, n_write = 0, 0, 0
  worst_status = 0
end

local post_body = '{"title":"soak"}'

function request()
  local r = math.random(1000)
  if r <= hit_pm then
    n_hit = n_hit + 1
    return wrk.format("GET", "/api/v1/videos?page=" .. math.random(hot_keys) .. "&limit=10")
  elseif r <= hit_pm + miss_pm then
    n_miss = n_miss + 1
    counter = (counter + 1) % cold_keys
    return wrk.format("GET", "/api/v1/lookup?uuid=k" .. counter)
  else
    n_write = n_write + 1
    if r > 1000 - register_pm then
      return wrk.format("POST", "/api/v1/register", {["Content-Type"] = "application/json"}, post_body)
    end
    return wrk.format("DELETE", "/api/v1/videos/k" .. math.random(cold_keys))
  end
end

function response(status, headers, body)
  if status >= 200 and status < 300 then
    ok2xx = ok2xx + 1
  elseif status >= 300 and status < 400 then
    ok3xx = ok3xx + 1
  else
    bad = bad + 1
    if worst_status == 0 then worst_status = status end
  end
  local x = headers["X-Cache"] or headers["x-cache"]
  if x == "HIT" then hit = hit + 1
  elseif x == "MISS" then miss = miss + 1
  else other = other + 1 end
end

function done(summary, latency, requests)
  local t = {ok2xx = 0, ok3xx = 0, bad = 0, hit = 0, miss = 0, other = 0,
             n_hit = 0, n_miss = 0, n_write = 0}
  local first_bad = 0
  for _, th in ipairs(threads) do
    for k, _ in pairs(t) do t[k] = t[k] + (th:get(k) or 0) end
    local w = th:get("worst_status") or 0
    if first_bad == 0 then first_bad = w end
  end
  local e = summary.errors
  io.write(string.format(
    "SOAK requests=%d ok2xx=%d ok3xx=%d bad=%d first_bad_status=%d x_hit=%d x_miss=%d x_other=%d " ..
    "sent_hit=%d sent_miss=%d sent_write=%d err_connect=%d err_read=%d err_write=%d err_status=%d err_timeout=%d " ..
    "lat_p50_us=%d lat_p99_us=%d lat_max_us=%d\n",
    summary.requests, t.ok2xx, t.ok3xx, t.bad, first_bad, t.hit, t.miss, t.other,
    t.n_hit, t.n_miss, t.n_write, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
