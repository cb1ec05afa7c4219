"""Creates N users through SCIM with 8 clients, then times reads (medians of 7): see run.sh."""
import json, sys, time, urllib.request, concurrent.futures, statistics
base, token, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
def req(method, path, body=None):
    r = urllib.request.Request(base + path, method=method, data=json.dumps(body).encode() if body else None,
        headers={"Authorization": "Bearer " + token, "Content-Type": "application/scim+json"})
    t = time.perf_counter()
    with urllib.request.urlopen(r) as resp:
        resp.read()
    return time.perf_counter() - t
def create(i):
    return req("POST", "/Users", {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": f"user{i}@contoso.example",
        "externalId": f"ext-{i}", "name": {"givenName": "U", "familyName": str(i)}, "active": True,
        "emails": [{"type": "work", "value": f"user{i}@contoso.example", "primary": True}]})
t0 = time.perf_counter()
with concurrent.futures.ThreadPoolExecutor(8) as ex:
    times = list(ex.map(create, range(n)))
total = time.perf_counter() - t0
print(f"create {n}: {total:.1f} s, {n/total:.0f}/s, p50 {statistics.median(times)*1000:.0f} ms")
for name, path in [("userName eq", '/Users?filter=userName%20eq%20%22user7%40contoso.example%22'),
                   ("externalId eq", '/Users?filter=externalId%20eq%20%22ext-7%22'),
                   ("page of 100 at the end", f'/Users?startIndex={max(1, n - 99)}&count=100'),
                   ("a filter that reads every user", '/Users?filter=name.familyName%20eq%20%227%22')]:
    ts = sorted(req("GET", path) for _ in range(7))
    print(f"{name}: median {ts[3]*1000:.1f} ms")
