"""``make bench``: every benchmark, one after the other (``--quick`` for smaller sizes)."""

from __future__ import annotations

import sys

from bench import (
    api_ingest,
    email_ingest,
    messaging_ingest,
    peer_paths,
    routing_core,
    routing_durable,
    voice_media,
    voice_webhooks,
)


def main() -> None:
    quick = "--quick" in sys.argv
    print("== the paths the performance issue compares with a mature help desk (wrk -t1 -c8) ==")
    sys.argv = [sys.argv[0], *(["--quick"] if quick else [])]
    peer_paths.main()
    print("\n== routing core ==")
    routing_core.run(quick=quick)
    print("\n== durable routing (SQLite) ==")
    routing_durable.run(quick=quick)
    print("\n== generic API channel ingest ==")
    sys.argv = [sys.argv[0], *(["--quick"] if quick else [])]
    api_ingest.main()
    print("\n== email ingest over SMTP ==")
    email_ingest.main()
    print("\n== Twilio SMS ingest ==")
    messaging_ingest.main()
    print("\n== voice call-control webhooks ==")
    voice_webhooks.main()
    print("\n== browser calls relayed and recorded by the server ==")
    voice_media.main()


if __name__ == "__main__":
    main()
