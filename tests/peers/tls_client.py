"""TLS clients for the gateway's HTTPS listener, printing one JSON line with what they saw.

  tls_client.py fetch URL --ca CA [--cert C --key K] [--http2] [--header NAME:VALUE]
      httpx GET: {"status", "http_version", "body"} or {"error"}
  tls_client.py handshake HOST PORT [--server-name NAME] [--alpn h2,http/1.1]
      Python ssl handshake only (the certificate is not checked, so an unknown name's answer can
      be seen): {"sha256" of the leaf certificate, "alpn", "version"} or {"error"}
"""

import argparse
import hashlib
import json
import socket
import ssl
import sys


def fetch(args):
    import httpx

    context = ssl.create_default_context(cafile=args.ca)
    if args.cert:
        context.load_cert_chain(args.cert, args.key)
    headers = dict(h.split(":", 1) for h in args.header)
    try:
        with httpx.Client(verify=context, http2=args.http2, http1=not args.http2, trust_env=False, timeout=20) as client:
            response = client.get(args.url, headers=headers)
            return {"status": response.status_code, "http_version": response.http_version, "body": response.text}
    except Exception as error:  # the test reads the failure
        return {"error": f"{type(error).__name__}: {error}"}


def handshake(args):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    if args.alpn:
        context.set_alpn_protocols(args.alpn.split(","))
    try:
        with socket.create_connection((args.host, args.port), timeout=20) as sock:
            with context.wrap_socket(sock, server_hostname=args.server_name) as tls:
                leaf = tls.getpeercert(binary_form=True)
                return {"sha256": hashlib.sha256(leaf).hexdigest(), "alpn": tls.selected_alpn_protocol(), "version": tls.version()}
    except Exception as error:
        return {"error": f"{type(error).__name__}: {error}"}


def main():
    parser = argparse.ArgumentParser()
    commands = parser.add_subparsers(dest="command", required=True)
    f = commands.add_parser("fetch")
    f.add_argument("url")
    f.add_argument("--ca", required=True)
    f.add_argument("--cert")
    f.add_argument("--key")
    f.add_argument("--http2", action="store_true")
    f.add_argument("--header", action="append", default=[])
    h = commands.add_parser("handshake")
    h.add_argument("host")
    h.add_argument("port", type=int)
    h.add_argument("--server-name")
    h.add_argument("--alpn")
    args = parser.parse_args()
    result = fetch(args) if args.command == "fetch" else handshake(args)
    print(json.dumps(result))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
