#!/usr/bin/env python3
"""An OTLP/HTTP metrics receiver for the OTLP lab: decodes each request (gzipped or
not) with OpenTelemetry's own protobuf definitions (PyPI `opentelemetry-proto`) and
prints a JSON line per request, then one per data point. argv[1]: the port (0: any);
prints the port first; serves until killed."""

import gzip
import json
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)


def attributes(key_values):
    out = {}
    for key_value in key_values:
        kind = key_value.value.WhichOneof("value")
        out[key_value.key] = getattr(key_value.value, kind) if kind else None
    return out


def points(request):
    for resource_metrics in request.resource_metrics:
        resource = attributes(resource_metrics.resource.attributes)
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                kind = metric.WhichOneof("data")
                data = getattr(metric, kind)
                for point in data.data_points:
                    number = point.WhichOneof("value")
                    yield {
                        "resource": resource,
                        "scope": scope_metrics.scope.name,
                        "metric": metric.name,
                        "unit": metric.unit,
                        "kind": kind,
                        "temporality": getattr(data, "aggregation_temporality", 0),
                        "monotonic": getattr(data, "is_monotonic", None),
                        "attributes": attributes(point.attributes),
                        "number": number,
                        "value": getattr(point, number),
                        "start": point.start_time_unix_nano,
                        "time": point.time_unix_nano,
                    }


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        decoded = list(points(ExportMetricsServiceRequest.FromString(body)))
        request = {
            "request": len(decoded),
            "path": self.path,
            "content_type": self.headers.get("Content-Type"),
            "encoding": self.headers.get("Content-Encoding"),
            "tenant": self.headers.get("X-Tenant"),
        }
        print(json.dumps(request), flush=True)
        for point in decoded:
            print(json.dumps(point), flush=True)
        answer = ExportMetricsServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args):
        pass


server = HTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
