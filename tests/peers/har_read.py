"""Reads a HAR file with haralyzer (PyPI), a HAR reader nobody here wrote, and prints what it
found as JSON: one object per entry. Usage: python3 har_read.py FILE"""
import json
import sys

from haralyzer import HarEntry, HarParser

parser = HarParser.from_file(sys.argv[1])
entries = []
for raw in parser.har_data["entries"]:
    entry = HarEntry(raw)
    entries.append({
        "method": entry.request.method,
        "url": entry.url,
        "status": entry.status,
        "mime_type": entry.response.mimeType,
        "started": entry.startTime.isoformat() if entry.startTime else None,
        "time": entry.time,
        "request_headers": {h["name"]: h["value"] for h in entry.request.headers},
        "response_text": entry.response.text,
        "request_text": entry.request.text,
        "route": raw.get("_route"),
        "mirror": raw.get("_mirror"),
        "trace_id": raw.get("_traceId"),
        "result": raw.get("_result"),
        "shadow_status": (raw.get("_shadow") or {}).get("status"),
    })
print(json.dumps({"version": parser.har_data["version"], "entries": entries}))
