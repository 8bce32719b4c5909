"""A local HTTP server that answers like the Hugging Face hub for one repository's files (HEAD and GET of
/{repo}/resolve/main/{file}), for download tests without a network: point HF_ENDPOINT at ``url``."""

from __future__ import annotations

import hashlib
import http.server
import threading

COMMIT = "0123456789abcdef0123456789abcdef01234567"  # the hub's commit of every file (X-Repo-Commit)


class FakeHub:
    def __init__(self, repo: str, files: dict[str, bytes]) -> None:
        self.repo, self.files = repo, files
        self.requests: list[tuple[str, str]] = []
        hub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self, with_body: bool) -> None:
                prefix = f"/{hub.repo}/resolve/main/"
                path = self.path.split("?")[0]
                name = path[len(prefix):] if path.startswith(prefix) else None
                hub.requests.append((self.command, path))
                if name not in hub.files:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                data = hub.files[name]
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.send_header("ETag", '"' + hashlib.sha256(data).hexdigest() + '"')
                self.send_header("X-Repo-Commit", COMMIT)
                self.end_headers()
                if with_body:
                    self.wfile.write(data)

            def do_HEAD(self) -> None:  # http.server's naming
                self._answer(False)

            def do_GET(self) -> None:
                self._answer(True)

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def downloads(self) -> list[str]:
        return [path for method, path in self.requests if method == "GET" and "/resolve/" in path]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
