"""Subscribe to every framewire topic and print one line per event; written only from docs/events.md.

    python subscriber.py --bootstrap 127.0.0.1:9092 [--prefix framewire] [--max N] [--timeout S]
"""
import argparse
import json

from kafka import KafkaConsumer

ap = argparse.ArgumentParser()
ap.add_argument("--bootstrap", default="127.0.0.1:9092")
ap.add_argument("--prefix", default="framewire")
ap.add_argument("--max", type=int, default=0, help="stop after this many distinct events")
ap.add_argument("--timeout", type=float, default=0, help="stop after this many idle seconds")
args = ap.parse_args()
topics = [f"{args.prefix}.{t}" for t in ("captions", "detections", "queries", "embeddings", "thumbnails",
                                              "ocr", "tracks", "zones", "windows", "status", "errors")]
consumer = KafkaConsumer(*topics, bootstrap_servers=args.bootstrap, auto_offset_reset="earliest",
                         isolation_level="read_committed",  # archive runs are transactional
                         consumer_timeout_ms=int(args.timeout * 1000) or float("inf"))
seen, n = set(), 0
for record in consumer:
    ev = json.loads(record.value)
    if ev["event_id"] in seen:  # at-least-once (live): the same event may come twice
        continue
    seen.add(ev["event_id"])
    what = {"caption": lambda e: e["text"], "detections": lambda e: [d["label"] for d in e["detections"]],
            "query": lambda e: f"{e['query']!r} matched={e['matched']}",
            "query_match": lambda e: f"{e['query']!r} {e['state']}", "embedding": lambda e: f"dim={e['dim']}",
            "thumbnail": lambda e: f"{e['width']}x{e['height']} jpeg {e['size_bytes']} B",
            "ocr": lambda e: [line["text"] for line in e["lines"]],
            "track": lambda e: f"{e['label']} #{e['track_id']} {e['kind']}",
            "zone": lambda e: f"#{e['track_id']} {e['kind']} {e['zone']}",
            "line": lambda e: f"#{e['track_id']} crossed {e['line']} {e['direction']}",
            "window": lambda e: f"{e['start']}..{e['end']} {e['frames']} frames",
            "answer": lambda e: f"{e['question']!r}: {e['answer']!r}",
            "status": lambda e: e["state"], "error": lambda e: f"{e['stage']}: {e['reason']}"}
    detail = what.get(ev["type"], lambda e: "")(ev)  # unknown (newer) types are printed, not fatal
    print(f"{ev['type']:<11} {ev['source_id']} {ev.get('pts', '')} {detail}", flush=True)
    n += 1
    if args.max and n >= args.max:
        break
