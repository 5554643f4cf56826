-- wrk script: every request is the next line of BENCH_REQUESTS_FILE, cycling; each thread starts at
-- its own share of the list (BENCH_THREADS threads). A line: METHOD<TAB>PATH[<TAB>Name: value]...
-- The requests are formatted once in init(), so the client does no work per request beyond wrk's own.
dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")

function init(args)
  common_init()
  requests = {}
  for line in assert(io.open(os.getenv("BENCH_REQUESTS_FILE"))):lines() do
    local fields = {}
    for field in line:gmatch("[^\t]+") do
      fields[#fields + 1] = field
    end
    local headers = {}
    for i = 3, #fields do
      local name, value = fields[i]:match("^([^:]+):%s*(.*)$")
      headers[name] = value
    end
    requests[#requests + 1] = wrk.format(fields[1], fields[2], headers)
  end
  local share = math.floor(#requests / tonumber(os.getenv("BENCH_THREADS") or "1"))
  index = (thread_id - 1) * share
end

function request()
  index = index % #requests + 1
  return requests[index]
end
