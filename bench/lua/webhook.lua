-- wrk script: POST the constant body of BENCH_BODY_FILE to BENCH_PATH, signed GitHub-style
-- (X-Hub-Signature-256 = BENCH_SIGNATURE, computed once in Python: GitHub's signature covers only
-- the body), with an X-GitHub-Delivery unique to this run, thread and request:
-- BENCH_DELIVERY_PREFIX-<thread id>-<n>.
dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")

function init(args)
  common_init()
  local file = assert(io.open(os.getenv("BENCH_BODY_FILE"), "rb"))
  body = file:read("*a")
  file:close()
  path = os.getenv("BENCH_PATH")
  prefix = os.getenv("BENCH_DELIVERY_PREFIX") .. "-" .. thread_id .. "-"
  sent = 0
  headers = {
    ["Content-Type"] = "application/json",
    ["User-Agent"] = "GitHub-Hookshot/bench",
    ["X-GitHub-Event"] = "push",
    ["X-Hub-Signature-256"] = os.getenv("BENCH_SIGNATURE"),
    ["X-Forwarded-Proto"] = "https",
  }
end

function request()
  sent = sent + 1
  headers["X-GitHub-Delivery"] = prefix .. sent
  return wrk.format("POST", path, headers, body)
end
