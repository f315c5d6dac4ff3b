-- wrk script for bench/throughput.py: POST a tiny task.
wrk.method = "POST"
wrk.body = '{"storage":"local","path":"tiny.csv"}'
wrk.headers["Content-Type"] = "application/json"
