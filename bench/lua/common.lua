-- Shared by paths.lua and webhook.lua (loaded with dofile): thread ids, status accounting, the report.
--
-- setup() gives each wrk thread an id (1, 2, ...) before its init() runs; response() counts every
-- answer whose status is not BENCH_EXPECT (wrk itself counts only >= 400, so a 301 or a 200
-- "duplicate" would pass unseen) and keeps the event id of each expected answer when BENCH_IDS_OUT
-- is set; done() prints one "bench: unexpected <n> [status=count ...]" line and writes the ids.

local threads = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("thread_id", #threads)
end

function common_init()
  expect = tonumber(os.getenv("BENCH_EXPECT") or "200")
  keep_ids = os.getenv("BENCH_IDS_OUT") ~= nil
  unexpected = {}
  ids = {}
end

function response(status, headers, body)
  if status ~= expect then
    unexpected[status] = (unexpected[status] or 0) + 1
  elseif keep_ids then
    ids[#ids + 1] = body:match('"event_id"%s*:%s*"?([%w%-]+)') or "?"
  end
end

function done(summary, latency, requests)
  local counts, total = {}, 0
  local out = os.getenv("BENCH_IDS_OUT") and assert(io.open(os.getenv("BENCH_IDS_OUT"), "w"))
  for _, thread in ipairs(threads) do
    for status, n in pairs(thread:get("unexpected") or {}) do
      counts[status] = (counts[status] or 0) + n
      total = total + n
    end
    if out then
      for _, id in ipairs(thread:get("ids") or {}) do
        out:write(id, "\n")
      end
    end
  end
  if out then
    out:close()
  end
  local detail = ""
  for status, n in pairs(counts) do
    detail = detail .. string.format(" %d=%d", status, n)
  end
  io.write(string.format("bench: unexpected %d%s\n", total, detail))
end
