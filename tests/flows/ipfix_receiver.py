#!/usr/bin/env python3
"""An IPFIX collector over TCP for the flows lab: decodes every record with python-ipfix
(PyPI `ipfix`), IANA's elements and the template netgraph publishes (docs/ipfix.iespec),
and prints each as a JSON line. Prints its port first; serves connections until killed."""

import ipaddress
import json
import socket
import sys

import ipfix.ie
import ipfix.reader

ipfix.ie.use_iana_default()
ipfix.ie.use_specfile(sys.argv[1])

server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
server.bind(("127.0.0.1", 0))
server.listen(4)
print(server.getsockname()[1], flush=True)


def plain(value):
    if isinstance(value, (int, float, str)):
        return value
    if isinstance(value, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
        return str(value)
    if hasattr(value, "timestamp"):
        return int(value.timestamp() * 1000)
    return str(value)


while True:
    connection, _ = server.accept()
    print(json.dumps({"connection": True}), flush=True)
    stream = connection.makefile("rb")
    for record in ipfix.reader.from_stream(stream).namedict_iterator():
        print(json.dumps({name: plain(value) for name, value in record.items()}), flush=True)
    connection.close()
