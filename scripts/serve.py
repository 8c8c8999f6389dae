#!/usr/bin/env python3
"""Serve a folder (by default the repository root) over HTTP on 127.0.0.1.

Only the loopback address is allowed, because the page needs no other host
and http://127.0.0.1 counts as a secure context, which WebGPU requires. Every
response carries `Cache-Control: no-store` so that a reload picks up a fresh
build of www/pkg/. Paths with a component that starts with a dot (.git,
.cache) get 404. `.wasm` is served as application/wasm, which
`WebAssembly.instantiateStreaming` requires, and `.js`/`.mjs` as
text/javascript.
"""

import argparse
import functools
import http.server
import os
import sys
import urllib.parse
from pathlib import Path

ALLOWED_HOST = "127.0.0.1"
REPO_ROOT = Path(__file__).resolve().parent.parent


class NoStoreHandler(http.server.SimpleHTTPRequestHandler):
    """Static file handler with explicit MIME types and caching turned off."""

    extensions_map = {
        **http.server.SimpleHTTPRequestHandler.extensions_map,
        ".wasm": "application/wasm",
        ".js": "text/javascript",
        ".mjs": "text/javascript",
        ".json": "application/json",
        ".css": "text/css",
        ".html": "text/html",
        ".safetensors": "application/octet-stream",
    }

    def send_head(self):
        # Keep .git, .cache and other dot folders of the repository private.
        path = urllib.parse.unquote(self.path.split("?", 1)[0].split("#", 1)[0])
        if any(part.startswith(".") for part in path.split("/") if part):
            self.send_error(404, "File not found")
            return None
        return super().send_head()

    def end_headers(self):
        self.send_header("Cache-Control", "no-store")
        super().end_headers()


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--host",
        default=ALLOWED_HOST,
        help=f"address to bind; only {ALLOWED_HOST} is accepted",
    )
    parser.add_argument(
        "--port",
        default=os.environ.get("PORT", "8000"),
        help="TCP port to listen on; 0 picks a free one (default: $PORT, else 8000)",
    )
    parser.add_argument(
        "--directory",
        type=Path,
        default=REPO_ROOT,
        help="folder to serve (default: the repository root)",
    )
    args = parser.parse_args(argv)
    if args.host != ALLOWED_HOST:
        parser.error(f"invalid --host {args.host!r}: this server binds {ALLOWED_HOST} only")
    port_text = str(args.port)
    if not port_text.isdigit() or int(port_text) > 65535:
        parser.error(f"invalid port {port_text!r} (from --port or PORT): expected an integer from 0 to 65535")
    args.port = int(port_text)
    if not args.directory.is_dir():
        parser.error(f"--directory {args.directory} is not a folder")
    return args


def main(argv=None):
    args = parse_args(argv)
    handler = functools.partial(NoStoreHandler, directory=str(args.directory))
    try:
        server = http.server.ThreadingHTTPServer((ALLOWED_HOST, args.port), handler)
    except OSError as error:
        print(
            f"serve: error: failed to listen on {ALLOWED_HOST}:{args.port}: {error}. "
            "Set PORT to a free port and retry.",
            file=sys.stderr,
        )
        return 1

    port = server.server_address[1]
    print(f"serve: serving {args.directory}, Ctrl-C stops", flush=True)
    print(f"adamix is ready: open http://{ALLOWED_HOST}:{port}/", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("serve: stopped", flush=True)
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
