"""An OTLP/HTTP receiver for tests: what ion-host exports, decoded with the official protobuf
definitions (the `opentelemetry-proto` package), kept in memory and served back as JSON.

Usage: python otlp_receiver.py [--port 0] [--print]
  Binds 127.0.0.1:PORT (0: any free port), prints `listening on <port>` as its first line and
  serves until SIGTERM or SIGINT. --print also prints each received span as one line.

OTLP (protobuf bodies, `Content-Encoding: gzip` allowed):
  POST /v1/traces   ExportTraceServiceRequest   -> 200 ExportTraceServiceResponse
  POST /v1/metrics  ExportMetricsServiceRequest -> 200 ExportMetricsServiceResponse
  A body that does not decode -> 400; a Content-Type other than application/x-protobuf -> 415.
What was received (JSON):
  GET /received  {"traces": [...], "metrics": [...]}, each {"headers": {lower-cased name: value},
                 "body": the request as protobuf's MessageToDict, proto field names}
  GET /spans     every span, flattened: hex ids, enum names, attributes as plain JSON values
  GET /metrics   every data point of every export request, flattened (a cumulative metric
                 exported three times shows up three times)
Control (JSON):
  POST /control/fail   {"status": 503}: every later OTLP POST is answered 503 (and counted, not
                       recorded); {"status": 0} turns that off
  POST /control/reset  forgets everything received and zeroes the counters
  GET /control/stats   {"trace_requests", "metric_requests", "failed_requests", "bad_requests"}:
                       decoded OTLP requests, OTLP requests answered by /control/fail, OTLP
                       requests refused with 400 or 415
"""

import argparse
import gzip
import json
import math
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from google.protobuf.json_format import MessageToDict
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.metrics.v1 import metrics_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

# Path -> (request type, response type, name of the kind in /received and the stats).
OTLP = {
    "/v1/traces": (
        trace_service_pb2.ExportTraceServiceRequest,
        trace_service_pb2.ExportTraceServiceResponse,
        "traces",
    ),
    "/v1/metrics": (
        metrics_service_pb2.ExportMetricsServiceRequest,
        metrics_service_pb2.ExportMetricsServiceResponse,
        "metrics",
    ),
}


def enum_name(enum, number):
    try:
        return enum.Name(number)
    except ValueError:  # a number the definitions do not know
        return str(number)


def value(any_value):
    """An AnyValue as plain JSON: string, int, float, bool, list, object (bytes as hex)."""
    kind = any_value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [value(v) for v in any_value.array_value.values]
    if kind == "kvlist_value":
        return attributes(any_value.kvlist_value.values)
    if kind == "bytes_value":
        return any_value.bytes_value.hex()
    v = getattr(any_value, kind)
    return v if not isinstance(v, float) or math.isfinite(v) else str(v)  # JSON has no NaN


def attributes(key_values):
    return {kv.key: value(kv.value) for kv in key_values}


def scope(s):
    return {"name": s.name, "version": s.version}


def flat_spans(request):
    for rs in request.resource_spans:
        resource = attributes(rs.resource.attributes)
        for ss in rs.scope_spans:
            for span in ss.spans:
                yield {
                    "trace_id": span.trace_id.hex(),
                    "span_id": span.span_id.hex(),
                    "parent_span_id": span.parent_span_id.hex(),
                    "name": span.name,
                    "kind": enum_name(trace_pb2.Span.SpanKind, span.kind),
                    "start_time_unix_nano": span.start_time_unix_nano,
                    "end_time_unix_nano": span.end_time_unix_nano,
                    "status": {
                        "code": enum_name(trace_pb2.Status.StatusCode, span.status.code),
                        "message": span.status.message,
                    },
                    "attributes": attributes(span.attributes),
                    "events": [
                        {
                            "name": e.name,
                            "time_unix_nano": e.time_unix_nano,
                            "attributes": attributes(e.attributes),
                        }
                        for e in span.events
                    ],
                    "resource": resource,
                    "scope": scope(ss.scope),
                }


def flat_points(request):
    for rm in request.resource_metrics:
        resource = attributes(rm.resource.attributes)
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                kind = metric.WhichOneof("data")  # gauge, sum, histogram, exponential_histogram, summary
                if kind is None:
                    continue
                data = getattr(metric, kind)
                temporality = getattr(data, "aggregation_temporality", None)
                for dp in data.data_points:
                    point = {
                        "name": metric.name,
                        "unit": metric.unit,
                        "description": metric.description,
                        "kind": kind,
                        "temporality": None
                        if temporality is None
                        else enum_name(metrics_pb2.AggregationTemporality, temporality),
                        "is_monotonic": data.is_monotonic if kind == "sum" else None,
                        "attributes": attributes(dp.attributes),
                        "count": None,
                        "sum": None,
                        "bucket_counts": None,
                        "explicit_bounds": None,
                        "value": None,
                        "start_time_unix_nano": dp.start_time_unix_nano,
                        "time_unix_nano": dp.time_unix_nano,
                        "resource": resource,
                        "scope": scope(sm.scope),
                    }
                    if kind in ("gauge", "sum"):
                        which = dp.WhichOneof("value")  # as_double or as_int
                        point["value"] = getattr(dp, which) if which else None
                    else:
                        point["count"] = dp.count
                        point["sum"] = dp.sum if kind == "summary" or dp.HasField("sum") else None
                    if kind == "histogram":
                        point["bucket_counts"] = list(dp.bucket_counts)
                        point["explicit_bounds"] = list(dp.explicit_bounds)
                    yield point


def span_line(s):
    """One span for a human: `span NAME kind=server trace=HEX dur=1.234ms key=value ...`."""

    def show(v):
        if isinstance(v, str) and v and not any(c.isspace() for c in v):
            return v
        return json.dumps(v)

    dur = (s["end_time_unix_nano"] - s["start_time_unix_nano"]) / 1e6
    parts = [
        f"span {s['name']}",
        f"kind={s['kind'].removeprefix('SPAN_KIND_').lower()}",
        f"trace={s['trace_id']}",
        f"span={s['span_id']}",
    ]
    if s["parent_span_id"]:
        parts.append(f"parent={s['parent_span_id']}")
    parts.append(f"dur={dur:.3f}ms")
    if s["status"]["code"] != "STATUS_CODE_UNSET":
        status = s["status"]["code"].removeprefix("STATUS_CODE_").lower()
        parts.append(f"status={status}" + (f"({s['status']['message']})" if s["status"]["message"] else ""))
    parts += [f"{k}={show(v)}" for k, v in s["attributes"].items()]
    parts += [f"event={show(e['name'])}" for e in s["events"]]
    return " ".join(parts)


class Receiver:
    """What has been received, shared by the handler threads."""

    def __init__(self, print_spans):
        self.print_spans = print_spans
        self.lock = threading.Lock()
        self.fail_status = 0
        self.reset()

    def reset(self):
        with self.lock:
            self.received = {"traces": [], "metrics": []}  # (headers, decoded request)
            self.failed = 0
            self.bad = 0

    def record(self, kind, headers, request):
        with self.lock:
            self.received[kind].append((headers, request))
        if kind == "traces" and self.print_spans:
            lines = [span_line(s) for s in flat_spans(request)]
            with self.lock:
                try:
                    for line in lines:
                        print(line, flush=True)
                except (OSError, ValueError):  # stdout closed: the receiver still serves
                    pass

    def snapshot(self, kind):
        with self.lock:
            return list(self.received[kind])

    def stats(self):
        with self.lock:
            return {
                "trace_requests": len(self.received["traces"]),
                "metric_requests": len(self.received["metrics"]),
                "failed_requests": self.failed,
                "bad_requests": self.bad,
            }


class BadRequest(Exception):
    pass


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as OTLP exporters expect; every reply has a length

    @property
    def receiver(self):
        return self.server.receiver

    def log_message(self, format, *args):  # quiet: stdout is for `listening on` and --print
        pass

    def reply(self, status, body=b"", content_type="text/plain; charset=utf-8"):
        if isinstance(body, str):
            body = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def reply_json(self, status, value):
        self.reply(status, json.dumps(value), "application/json")

    def read_body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                line = self.rfile.readline(65537)
                try:
                    size = int(line.split(b";")[0].strip(), 16)
                except ValueError:
                    raise BadRequest(f"bad chunk size line {line!r}")
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):  # trailers
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            raise BadRequest("bad Content-Length")
        return self.rfile.read(length)

    def do_GET(self):
        self.guarded(self.get)

    def do_POST(self):
        self.guarded(self.post)

    def guarded(self, handle):
        """A bad request is answered and noted on stderr; it never stops the server."""
        try:
            handle(self.read_body())  # read even for GET, so a kept-alive connection stays in step
        except BadRequest as e:
            self.close_connection = True  # the rest of the body may still be on the wire
            self.reply(400, f"{e}\n")
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as e:
            print(f"otlp_receiver: {self.command} {self.path}: {e!r}", file=sys.stderr, flush=True)
            self.close_connection = True
            try:
                self.reply(500, f"{e!r}\n")
            except OSError:
                pass

    def get(self, _body):
        r = self.receiver
        if self.path == "/received":
            self.reply_json(200, {
                kind: [
                    {"headers": headers, "body": MessageToDict(request, preserving_proto_field_name=True)}
                    for headers, request in r.snapshot(kind)
                ]
                for kind in ("traces", "metrics")
            })
        elif self.path == "/spans":
            self.reply_json(200, [s for _, request in r.snapshot("traces") for s in flat_spans(request)])
        elif self.path == "/metrics":
            self.reply_json(200, [p for _, request in r.snapshot("metrics") for p in flat_points(request)])
        elif self.path == "/control/stats":
            self.reply_json(200, r.stats())
        elif self.path in OTLP:
            self.reply(405, "POST only\n")
        else:
            self.reply(404, "not found\n")

    def post(self, body):
        r = self.receiver
        if self.path in OTLP:
            self.export(body, *OTLP[self.path])
        elif self.path == "/control/fail":
            try:
                status = json.loads(body)["status"]
                if type(status) is not int or not (status == 0 or 100 <= status <= 599):
                    raise ValueError(status)
            except (ValueError, KeyError, TypeError) as e:
                raise BadRequest(f'expected {{"status": 0 or an HTTP status}}: {e!r}')
            with r.lock:
                r.fail_status = status
            self.reply_json(200, {"status": status})
        elif self.path == "/control/reset":
            r.reset()
            self.reply_json(200, r.stats())
        else:
            self.reply(404, "not found\n")

    def export(self, body, request_type, response_type, kind):
        r = self.receiver
        with r.lock:
            fail_status = r.fail_status
            if fail_status:
                r.failed += 1
        if fail_status:
            self.reply(fail_status, f"failing on purpose ({fail_status})\n")
            return
        try:
            content_type = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
            if content_type != "application/x-protobuf":
                self.refuse(415, f"Content-Type {content_type!r}: only application/x-protobuf is supported")
                return
            if self.headers.get("Content-Encoding", "").lower() == "gzip":
                body = gzip.decompress(body)
            request = request_type.FromString(body)
        except (OSError, EOFError, DecodeError) as e:  # gzip raises OSError/EOFError
            self.refuse(400, f"not a {request_type.DESCRIPTOR.name}: {e!r}")
            return
        r.record(kind, {k.lower(): v for k, v in self.headers.items()}, request)
        self.reply(200, response_type().SerializeToString(), "application/x-protobuf")

    def refuse(self, status, why):
        with self.receiver.lock:
            self.receiver.bad += 1
        print(f"otlp_receiver: {self.path}: {status} {why}", file=sys.stderr, flush=True)
        self.reply(status, why + "\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1; 0: any free port")
    parser.add_argument("--print", action="store_true", help="print each received span as one line")
    args = parser.parse_args()

    ThreadingHTTPServer.request_queue_size = 128  # the default 5 resets a burst of connections
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.receiver = Receiver(print_spans=args.print)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"listening on {server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
