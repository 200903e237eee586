#!/usr/bin/env python3
"""Loopback-only attacks against ion-host or spin up (bench/hostile/run.sh starts the server).

Usage: attacks.py URL ATTACK [N [HOLD_S]]
  streams N        N event streams held open (emulator pacing CHUNK_DELAY ms, default 3000),
                   then /health and /chat beside them, then a second wave
  idle-uploads N   N connections that announce a body (ANNOUNCE bytes, default 1 MiB) and
                   send none, then /chat beside them
  non-readers N    N connections that pipeline requests and never read (the server's pid in
                   SRV_PID), then /health for HOLD_S seconds (default 40)
"""
import asyncio, json, sys, time, os, subprocess

URL = sys.argv[1]
HOST, PORT = URL.split("//")[1].split(":")
PORT = int(PORT)
assert HOST == "127.0.0.1"

async def exchange(raw, timeout=10.0, read_all=True):
    try:
        r, w = await asyncio.wait_for(asyncio.open_connection(HOST, PORT), timeout)
        w.write(raw); await w.drain()
        data = b""
        deadline = time.monotonic() + timeout
        while b"\r\n\r\n" not in data:
            chunk = await asyncio.wait_for(r.read(65536), max(0.01, deadline - time.monotonic()))
            if not chunk: break
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        status = int(head.split(b" ")[1]) if head.startswith(b"HTTP/") else None
        if read_all and status is not None:
            cl = [l for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")]
            if cl:
                n = int(cl[0].split(b":")[1])
                while len(body) < n:
                    chunk = await asyncio.wait_for(r.read(65536), max(0.01, deadline - time.monotonic()))
                    if not chunk: break
                    body += chunk
        w.close()
        return status, head.decode(errors="replace"), body.decode(errors="replace")
    except Exception as e:
        return None, type(e).__name__, ""

def post(path, body, extra=""):
    b = body.encode()
    return (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{extra}Content-Length: {len(b)}\r\n\r\n").encode() + b

GET_HEALTH = b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"

def summary(statuses):
    out = {}
    for s in statuses: out[str(s)] = out.get(str(s), 0) + 1
    return out

async def streams(n):
    held = []
    statuses = []
    async def one(i):
        try:
            r, w = await asyncio.open_connection(HOST, PORT)
            body = json.dumps({"message": f"stream {i} [[emulator:chunk-delay=" + os.environ.get("CHUNK_DELAY", "3000") + "]]", "stream": True})
            w.write(post("/chat", body)); await w.drain()
            data = b""
            while b"\r\n\r\n" not in data:
                c = await asyncio.wait_for(r.read(4096), 20)
                if not c: break
                data += c
            statuses.append(int(data.split(b" ")[1]) if data.startswith(b"HTTP/") else None)
            held.append((r, w))
        except Exception as e:
            statuses.append(type(e).__name__)
    for i in range(n):
        await one(i)
    health = [ (await exchange(GET_HEALTH, 5))[0] for _ in range(10)]
    chats = []
    retry = []
    for i in range(10):
        s, h, b = await exchange(post("/chat", json.dumps({"message": f"plain {i}"})), 10)
        chats.append(s)
        for l in h.split("\r\n"):
            if l.lower().startswith("retry-after"): retry.append(l.split(":")[1].strip())
    print(json.dumps({"streams": summary(statuses), "health": summary(health), "chat": summary(chats), "retry_after": retry}))
    # keep the streams' connections open; more streams after the first ones ended
    await asyncio.sleep(6)
    more = []
    for i in range(n, n + n // 2):
        before = len(statuses); await one(i); more.append(statuses[-1])
    s, h, b = await exchange(post("/chat", json.dumps({"message": "later"})), 10)
    ra = [l.split(":")[1].strip() for l in h.split("\r\n") if l.lower().startswith("retry-after")]
    print(json.dumps({"second_wave": summary(more), "chat_then": s, "retry_after_then": ra}))
    for r, w in held: w.close()

async def idle_uploads(n):
    held = []
    for i in range(n):
        r, w = await asyncio.open_connection(HOST, PORT)
        w.write(b"POST /chat HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: " + os.environ.get("ANNOUNCE", "1048576").encode() + b"\r\n\r\n"); await w.drain()
        held.append((r, w))
    await asyncio.sleep(0.5)
    chats = []; retry = []
    t0 = time.monotonic()
    for i in range(10):
        s, h, b = await exchange(post("/chat", json.dumps({"message": f"beside idle uploads {i}"})), 10)
        chats.append(s)
        for l in h.split("\r\n"):
            if l.lower().startswith("retry-after"): retry.append(l.split(":")[1].strip())
    # what the idle uploads got, and when
    async def first_answer(r):
        try:
            d = await asyncio.wait_for(r.read(200), 40)
            return (d.split(b" ")[1].decode() if d.startswith(b"HTTP/") else ("closed" if not d else "?"), round(time.monotonic() - t0, 1))
        except asyncio.TimeoutError:
            return ("no answer in 40 s", None)
    answers = await asyncio.gather(*(first_answer(r) for r, w in held))
    print(json.dumps({"chat_beside": summary(chats), "retry_after": retry,
                      "idle_upload_answers": summary([a[0] for a in answers]),
                      "answered_after_s": sorted(set(a[1] for a in answers if a[1] is not None))[:3]}))
    for r, w in held: w.close()

async def non_readers(n, hold_s):
    import socket
    socks = []
    req = b"GET /openapi.json HTTP/1.1\r\nHost: x\r\n\r\n" * 400
    for i in range(n):
        s = socket.socket(); s.setblocking(False)
        try:
            s.connect_ex((HOST, PORT))
        except Exception: pass
        socks.append(s)
    await asyncio.sleep(0.3)
    for s in socks:
        try: s.send(req)
        except Exception: pass
    await asyncio.sleep(1.0)
    pid = os.environ["SRV_PID"]
    fds = lambda: len(os.listdir(f"/proc/{pid}/fd"))
    t0 = time.monotonic()
    first5 = []
    for i in range(5):
        st, h, b = await exchange(GET_HEALTH, 5)
        first5.append(st if st else h)
    timeline = []
    first_ok = None
    while time.monotonic() - t0 < hold_s:
        st, h, b = await exchange(GET_HEALTH, 2)
        el = round(time.monotonic() - t0, 1)
        if st == 200 and first_ok is None: first_ok = el
        timeline.append((el, fds(), st))
        await asyncio.sleep(1)
    print(json.dumps({"first_5_health": summary(first5), "first_health_200_after_s": first_ok,
                      "server_fds_over_time": timeline[::5]}))
    for s in socks: s.close()

async def main():
    what = sys.argv[2]
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    if what == "streams": await streams(n)
    elif what == "idle-uploads": await idle_uploads(n)
    elif what == "non-readers": await non_readers(n, float(sys.argv[4]) if len(sys.argv) > 4 else 40)
asyncio.run(main())
