-- wrk script: POST /api/users with an email unique per thread and request.
local counter = 0
local threads = 0

function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end

function init(args)
  -- wrk's random numbers start from the same seed in every run: without this, a second run
  -- against the same database would repeat the first one's emails and get 409s.
  math.randomseed(os.time() * 1000 + (tid or 0))
  prefix = string.format("bench-%d-%d", tid or 0, math.random(1, 1000000000))
end

function request()
  counter = counter + 1
  local body = string.format('{"name":"Bench %d","email":"%s-%d@example.com"}', counter, prefix, counter)
  return wrk.format("POST", "/api/users", {["Content-Type"] = "application/json"}, body)
end
