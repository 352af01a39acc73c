"""Sends one message of each Segment call through segment-analytics-python (module
segment.analytics), unmodified, gzip on, to the gateway at HOST with write key KEY, then flushes
and shuts the client down. Prints one JSON line: {"failures": [...], "batches": [<each request
body as sent>], "ids": {messageId: uuid5}}. Used by tests/e2e/segment_sdks.rs."""

import json
import logging
import sys
import uuid
from datetime import datetime, timedelta, timezone

from segment.analytics import Client

NAMESPACE = uuid.UUID("167b82ba-c7dd-46be-a6d1-43e7838f763c")
host, write_key = sys.argv[1], sys.argv[2]
failures, batches = [], []


class Capture(logging.Handler):
    """The client logs each request body (before gzip) at debug level: keep them."""

    def emit(self, record):
        if record.msg == "making request: %s":
            batches.append(json.loads(record.args[0]))


log = logging.getLogger("segment")
log.setLevel(logging.DEBUG)
log.addHandler(Capture())
log.propagate = False


def on_error(error, batch):
    failures.append("on_error: %r for %d messages" % (error, len(batch)))


client = Client(write_key, host=host, gzip=True, on_error=on_error, upload_interval=0.1, max_retries=3)
user = "py-user-1"
client.track(user, "Signed Up", {"source": "ad", "n": 3}, timestamp=datetime(2026, 1, 31, 12, 0, 0, 123000, tzinfo=timezone.utc), message_id="py-track-1")
client.identify(user, {"email": "a@example.com"}, timestamp=datetime(2026, 1, 31, 12, 0, 1, tzinfo=timezone(timedelta(hours=5, minutes=30))), message_id="py-identify-1")
client.page(anonymous_id="py-anon-1", category="Docs", name="Home", properties={"path": "/"}, message_id="py-page-1")
client.screen(user, name="Profile", timestamp=datetime(2024, 2, 29, 23, 59, 59, tzinfo=timezone.utc), message_id="py-screen-1")
client.group(user, "initech", {"seats": 9}, timestamp=datetime(2026, 1, 1, 0, 0, 0, tzinfo=timezone.utc), message_id="py-group-1")
client.alias("py-anon-1", user, timestamp=datetime(2026, 1, 31, 12, 0, 2, tzinfo=timezone.utc), message_id="a3bb189e-8bf9-3888-9912-ace4e6543002")
client.flush()
client.shutdown()
ids = {m["messageId"]: str(uuid.uuid5(NAMESPACE, m["messageId"])) for b in batches for m in b["batch"]}
print(json.dumps({"failures": failures, "batches": batches, "ids": ids}))
