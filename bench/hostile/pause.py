"""A hang-up during an upstream pause: a stream whose upstream pauses 15 s between chunks; the
client hangs up after the head; prints how long the upstream connection stays open.

Usage: pause.py SERVER_PORT EMULATOR_PORT   (bench/hostile/run.sh starts both)
"""
import socket, json, time, subprocess, sys
port, emu = int(sys.argv[1]), int(sys.argv[2])
def upstream():
    out = subprocess.run(["ss", "-tnH", "state", "established", f"dport = :{emu}"], capture_output=True, text=True).stdout
    return len([l for l in out.splitlines() if l.strip()])
s = socket.create_connection(("127.0.0.1", port))
body = json.dumps({"message": "pause [[emulator:chunk-delay=15000]]", "stream": True}).encode()
s.sendall(b"POST /chat HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
data = b""
while b"\r\n\r\n" not in data:
    data += s.recv(4096)
print("head:", data.split(b"\r\n")[0].decode(), "upstream connections:", upstream())
time.sleep(0.5)
s.close()
t0 = time.monotonic()
seen = []
while time.monotonic() - t0 < 20:
    n = upstream()
    seen.append((round(time.monotonic() - t0, 1), n))
    if n == 0: break
    time.sleep(0.1)
print("after hang-up, upstream connections:", seen[0], "->", seen[-1])
