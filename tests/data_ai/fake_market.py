#!/usr/bin/python3
"""fake_market.py - a local stand-in for Binance's and Yahoo's market-data endpoints.

The data worker's Binance and Yahoo adapters are real HTTP clients; no network reaches the
real services here, so the tests point them at this server on 127.0.0.1. It speaks the public
formats from the recorded answers in fixtures/:

  GET /api/v3/klines?symbol=S&interval=I[&startTime=ms][&endTime=ms][&limit=n]
      fixtures/binance_klines_<S>_<I>.json, filtered like Binance (open time in
      [startTime, endTime], at most limit, default 500, at most 1000); an unknown symbol is
      HTTP 400 {"code":-1121,"msg":"Invalid symbol."}
  GET /v8/finance/chart/<symbol>?period1=s&period2=s&interval=I
      fixtures/yahoo_chart_<symbol>_<I>.json (non-alphanumerics in the symbol become '_'),
      filtered to [period1, period2); an unknown symbol is HTTP 404 with Yahoo's error body

Test control, outside the real APIs:
  POST /_script    a JSON list of canned answers served first, in order, to requests whose
                   path starts with the answer's "path": {"path", "status", "headers",
                   "body" | "fixture", "delay" (seconds before answering)}
  GET  /_requests  the requests received so far (path with query), as a JSON list
  DELETE /_requests  forgets them

--rebase shifts every fixture's times so that its newest bar is recent: Binance's by whole
intervals (the newest kline opens in the current one and is still forming), Yahoo's by whole
weeks (bars stay on weekdays). A live feed polling "the last 500 bars" then finds them.

Run: fake_market.py FIXTURE_DIR [--rebase]. It prints "PORT <n>" on its first line once it
listens, then serves until killed. Standard library only.
"""
import json
import os
import re
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

FIXTURES = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "fixtures")
REBASE = "--rebase" in sys.argv[2:]
UNITS = {"s": 1000, "m": 60000, "h": 3600000, "d": 86400000, "w": 604800000}
YAHOO_IV = {"1m": 60, "2m": 120, "5m": 300, "15m": 900, "30m": 1800, "60m": 3600, "90m": 5400,
            "1h": 3600, "1d": 86400, "5d": 432000, "1wk": 604800, "1mo": 2592000, "3mo": 7776000}

lock = threading.Lock()
script = []
requests = []


def interval_ms(text):
    m = re.fullmatch(r"([1-9][0-9]*)([smhdwM])", text or "")
    if not m:
        return None
    return int(m.group(1)) * (UNITS[m.group(2)] if m.group(2) != "M" else 30 * 86400000)


def load(name):
    path = os.path.join(FIXTURES, name)
    if not os.path.isfile(path):
        return None
    with open(path, "rb") as f:
        return f.read()


SHIFTS = {}


def rebase_shift(newest_ms, step_ms):
    """Whole steps that move newest_ms into the current step, fixed at the first request for
    that fixture: a test that runs across a step boundary (a minute, for 1m klines) must see
    the same bars at the same times on every poll, or it would see every bar move."""
    if not REBASE or step_ms <= 0:
        return 0
    key = (newest_ms, step_ms)
    if key not in SHIFTS:
        now = int(time.time() * 1000)
        SHIFTS[key] = ((now - newest_ms) // step_ms) * step_ms
    return SHIFTS[key]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def answer(self, status, body, headers=None, ctype="application/json;charset=UTF-8"):
        if isinstance(body, str):
            body = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def scripted(self, path):
        with lock:
            for i, s in enumerate(script):
                if path.startswith(s.get("path", "/")):
                    return script.pop(i)
        return None

    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        data = self.rfile.read(n) if n else b""
        if self.path == "/_script":
            items = json.loads(data or b"[]")
            with lock:
                script.extend(items)
            return self.answer(200, json.dumps({"queued": len(script)}))
        self.answer(404, "{}")

    def do_DELETE(self):
        if self.path == "/_requests":
            with lock:
                requests.clear()
            return self.answer(200, "{}")
        self.answer(404, "{}")

    def do_GET(self):
        url = urlsplit(self.path)
        if url.path == "/_requests":
            with lock:
                return self.answer(200, json.dumps(requests))
        with lock:
            requests.append(self.path)
        s = self.scripted(url.path)
        if s:
            if s.get("delay"):
                time.sleep(float(s["delay"]))
            body = s.get("body", "")
            if "fixture" in s:
                body = load(s["fixture"]) or b""
            return self.answer(int(s.get("status", 200)), body, s.get("headers"))
        q = {k: v[-1] for k, v in parse_qs(url.query).items()}
        if url.path == "/api/v3/klines":
            return self.klines(q)
        if url.path.startswith("/v8/finance/chart/"):
            return self.chart(unquote(url.path[len("/v8/finance/chart/"):]), q)
        self.answer(404, json.dumps({"error": "no such endpoint"}))

    def klines(self, q):
        symbol, iv = q.get("symbol", ""), q.get("interval", "")
        raw = load("binance_klines_%s_%s.json" % (symbol, iv)) if re.fullmatch(r"[A-Z0-9]{1,20}", symbol) else None
        if raw is None:
            return self.answer(400, load("binance_error_invalid_symbol.json"))
        rows = json.loads(raw)
        step = interval_ms(iv) or 60000
        shift = rebase_shift(max(r[0] for r in rows), step) if rows else 0
        start, end = int(q.get("startTime", -2**62)), int(q.get("endTime", 2**62))
        limit = min(int(q.get("limit", 500)), 1000)
        out = []
        for r in rows:
            r = [r[0] + shift] + r[1:6] + [r[6] + shift] + r[7:]
            if start <= r[0] <= end and len(out) < limit:
                out.append(r)
        self.answer(200, json.dumps(out, separators=(",", ":")))

    def chart(self, symbol, q):
        iv = q.get("interval", "1d")
        raw = load("yahoo_chart_%s_%s.json" % (re.sub(r"[^A-Za-z0-9]", "_", symbol), iv))
        if raw is None:
            return self.answer(404, load("yahoo_error_not_found.json"))
        doc = json.loads(raw)
        res = doc["chart"]["result"][0]
        ts = res.get("timestamp", [])
        # Whole weeks: a stock's bars stay on weekdays.
        step = max(YAHOO_IV.get(iv, 86400), 604800)
        shift = rebase_shift(max(ts) * 1000, step * 1000) // 1000 if ts else 0
        p1, p2 = int(q.get("period1", 0)), int(q.get("period2", 2**62))
        keep = [i for i, t in enumerate(ts) if p1 <= t + shift < p2]
        res["timestamp"] = [ts[i] + shift for i in keep]
        quote = res["indicators"]["quote"][0]
        for k in quote:
            quote[k] = [quote[k][i] for i in keep]
        if not keep:
            del res["timestamp"]
        self.answer(200, json.dumps(doc, separators=(",", ":")))


def main():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    print("PORT %d" % server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
