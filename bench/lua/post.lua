-- wrk script for bench/run: POSTs a form to BENCH_PATH, with an optional Authorization
-- header (BENCH_AUTH). The body is either fixed (BENCH_BODY) or "token=<t>" where <t> rotates
-- over the lines of BENCH_TOKENS, starting at line BENCH_OFFSET + 1, each wrk thread on its
-- own slice. done() prints one machine-readable RESULT line for bench/run.

local path = os.getenv("BENCH_PATH") or "/"
local auth = os.getenv("BENCH_AUTH") or ""
local body = os.getenv("BENCH_BODY") or ""
local file = os.getenv("BENCH_TOKENS") or ""
local offset = tonumber(os.getenv("BENCH_OFFSET") or "0")

local headers = { ["Content-Type"] = "application/x-www-form-urlencoded" }
if auth ~= "" then headers["Authorization"] = auth end

local threads = {}
local next_id = 0

function setup(thread)
   thread:set("id", next_id)
   next_id = next_id + 1
   table.insert(threads, thread)
end

-- Globals, so that done() can read them from each thread with thread:get().
made = 0
count = 0
local tokens = nil
local start = 0
local fixed = nil

function init(args)
   if file ~= "" then
      tokens = {}
      for line in io.lines(file) do tokens[#tokens + 1] = line end
      count = #tokens
      start = offset + id * math.floor(count / next_id_total())
      -- wrk calls request() once after init to check what it returns, and never sends that
      -- one: start one below, so the first request sent is the token at `start`.
      made = -1
   else
      fixed = wrk.format("POST", path, headers, body)
   end
end

function next_id_total()
   return tonumber(os.getenv("BENCH_WRK_THREADS") or "1")
end

function request()
   made = made + 1
   if tokens then
      local i = (start + made - 1) % count + 1
      return wrk.format("POST", path, headers, "token=" .. tokens[i])
   end
   return fixed
end

function done(summary, latency, requests)
   local total_made, per_thread_tokens = 0, 0
   for _, t in ipairs(threads) do
      total_made = total_made + (t:get("made") or 0)
      per_thread_tokens = t:get("count") or 0
   end
   local e = summary.errors
   io.write(string.format(
      "RESULT requests=%d duration_us=%d connect=%d read=%d write=%d status=%d timeout=%d " ..
      "p50_us=%d p99_us=%d max_us=%d made=%d tokens=%d\n",
      summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
      latency:percentile(50), latency:percentile(99), latency.max, total_made, per_thread_tokens))
end
