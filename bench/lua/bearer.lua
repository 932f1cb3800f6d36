-- wrk script for bench/run: GETs BENCH_PATH of a protected API with
-- "Authorization: Bearer <t>", where <t> rotates over the lines of BENCH_TOKENS, starting at
-- line BENCH_OFFSET + 1, each wrk thread on its own slice. done() prints the RESULT line of
-- bench/lua/post.lua, in the same format.

local path = os.getenv("BENCH_PATH") or "/"
local file = os.getenv("BENCH_TOKENS") or ""
local offset = tonumber(os.getenv("BENCH_OFFSET") or "0")

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
local tokens = {}
local start = 0

function init(args)
   if file == "" then
      io.stderr:write("bearer.lua needs BENCH_TOKENS\n")
      os.exit(2)
   end
   for line in io.lines(file) do tokens[#tokens + 1] = line end
   count = #tokens
   local threads_total = tonumber(os.getenv("BENCH_WRK_THREADS") or "1")
   start = offset + id * math.floor(count / threads_total)
   -- wrk calls request() once after init to check what it returns, and never sends that
   -- one: start one below, so the first request sent is the token at `start`.
   made = -1
end

function request()
   made = made + 1
   local i = (start + made - 1) % count + 1
   return wrk.format("GET", path, { ["Authorization"] = "Bearer " .. tokens[i] })
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
