-- Argo CD health check for the access.portal.dev kinds (Account, AdminInvitation, RoleBinding,
-- AccountManager, Subscription, UserRole, Team, User), read from the kstatus conditions the
-- operator records.
--
--   Healthy      Ready=True: the portal matches the spec, or it waits for a person to act on
--                something done right (a pending invitation, an activation email sent, a
--                binding whose subject has not accepted yet); the message says which.
--   Progressing  no status yet, a status for an older generation, or Reconciling=True (work
--                under way, waiting for an Account, retrying while the portal is unavailable).
--   Degraded     Stalled=True: a person must act (a refusal, an invitation that expired or was
--                revoked, an activation that expired, a user waiting for a licence); the
--                message says what to do.
--
-- Suspended is not used: waiting for a person to accept is the healthy state of an invitation,
-- and marking it Suspended would mark the whole Application Suspended for days.
local hs = { status = "Progressing", message = "waiting for the operator to record a status" }
if obj.status == nil or obj.status.conditions == nil then
  return hs
end
local generation = obj.metadata.generation
local observed = obj.status.observedGeneration
if generation ~= nil and (observed == nil or observed < generation) then
  hs.message = "waiting for the operator to observe generation " .. tostring(generation)
  return hs
end
local found = {}
for _, condition in ipairs(obj.status.conditions) do
  found[condition.type] = condition
end
local function describe(condition)
  local message = condition.reason or ""
  if condition.message ~= nil and condition.message ~= "" then
    message = message .. ": " .. condition.message
  end
  return message
end
if found.Stalled ~= nil and found.Stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = describe(found.Stalled)
elseif found.Reconciling ~= nil and found.Reconciling.status == "True" then
  hs.status = "Progressing"
  hs.message = describe(found.Reconciling)
elseif found.Ready ~= nil and found.Ready.status == "True" then
  hs.status = "Healthy"
  hs.message = describe(found.Ready)
elseif found.Ready ~= nil then
  hs.message = describe(found.Ready)
end
return hs
