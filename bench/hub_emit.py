"""Fan-out trigger for the hub: emits one event to many users through the transport (`hub.realtime.publish_frames`).

Run by the harness as `python -m bench.hub_emit USER_IDS.json` with the hub's environment. It sets
Django up, warms the channel layer, prints `ready`, then for each line `ROUND` on stdin emits
`bench.fanout {"id": "fanout-ROUND"}` to every user's devices and prints the perf_counter times
just before the first and after the last publish."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time


async def main(user_ids: list[str]) -> None:
    from hub.realtime import encode_frame, publish_frames

    await publish_frames([(encode_frame("bench.warmup", {}), ["00000000-0000-0000-0000-000000000000"], None)])
    print("ready", flush=True)
    loop = asyncio.get_running_loop()
    while line := (await loop.run_in_executor(None, sys.stdin.readline)).strip():
        t0 = time.perf_counter()
        await publish_frames([(encode_frame("bench.fanout", {"id": f"fanout-{line}"}), user_ids, None)])
        t1 = time.perf_counter()
        print(f"{t0} {t1}", flush=True)


if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    with open(sys.argv[1]) as f:
        ids = json.load(f)
    asyncio.run(main(ids))
