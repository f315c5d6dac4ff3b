-- wrk script for bench/throughput.py: POST a tiny task; with an argument (`-- N`), each
-- thread stops after N answers, so that a run posts about N x threads tasks, however
-- fast the backend is.
wrk.method = "POST"
wrk.body = '{"storage":"local","path":"tiny.csv"}'
wrk.headers["Content-Type"] = "application/json"

local limit, answered = nil, 0

function init(args)
  limit = tonumber(args[1])
end

function response()
  answered = answered + 1
  if limit and answered >= limit then
    wrk.thread:stop()
  end
end
