-- wrk script: POST the body of BENCH_BODY_FILE to BENCH_PATH with the headers of BENCH_HEADERS_FILE
-- (one "Name: value" per line), formatted once in init().
dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")

function init(args)
  common_init()
  local file = assert(io.open(os.getenv("BENCH_BODY_FILE"), "rb"))
  local body = file:read("*a")
  file:close()
  local headers = {}
  for line in assert(io.open(os.getenv("BENCH_HEADERS_FILE"))):lines() do
    local name, value = line:match("^([^:]+):%s*(.*)$")
    if name then
      headers[name] = value
    end
  end
  formatted = wrk.format("POST", os.getenv("BENCH_PATH"), headers, body)
end

function request()
  return formatted
end
