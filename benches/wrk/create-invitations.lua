-- wrk script: POST unique admin invitations with an Idempotency-Key, as the operator does.
-- Usage: wrk -t1 -c16 -d10s -s create-invitations.lua URL -- ACCOUNT_ID API_KEY
local threads = {}
local next_thread = 0

function setup(thread)
  thread:set("tid", next_thread)
  next_thread = next_thread + 1
  table.insert(threads, thread)
end

function init(args)
  account = args[1]
  key = args[2]
  counter = 0
  failures = 0
  path = "/v1/accounts/" .. account .. "/invitations"
end

function request()
  counter = counter + 1
  local id = tid .. "-" .. counter
  local body = '{"email":"u' .. id .. '@contoso.example","firstName":"Load","lastName":"Test",'
    .. '"externalRef":"AdminInvitation/load/' .. id .. '"}'
  return wrk.format("POST", path, {
    ["Content-Type"] = "application/json",
    ["Authorization"] = "Bearer " .. key,
    ["Idempotency-Key"] = "load-" .. id,
  }, body)
end

function response(status, headers, body)
  if status ~= 201 then
    failures = failures + 1
  end
end

function done(summary, latency, requests)
  local failed = 0
  for _, thread in ipairs(threads) do
    failed = failed + thread:get("failures")
  end
  io.write(string.format("non-201 responses: %d\n", failed))
end
