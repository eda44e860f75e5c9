"""The official FluidTalk client (fluidtalk==1.0.3) used as its README shows it, the way a
team would script a campaign without the runner: leads in a SQLite table, a loop that opens
a conversation with each new lead and writes the answer back. With THREADS > 1 the calls
go through a thread pool of that size (the writes stay on the main thread: a SQLite
connection is not shared between threads). Prints one JSON object.

    python_client.py BASE_URL DB_PATH LEADS THREADS
"""
import json
import sqlite3
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from fluidtalk import FluidTalk, FluidTalkError


def main():
    base_url, path, n, threads = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    db = sqlite3.connect(path)
    db.execute(
        "CREATE TABLE leads (target TEXT PRIMARY KEY, state TEXT NOT NULL DEFAULT 'new',"
        " session_id TEXT, message TEXT, error TEXT)"
    )
    db.executemany("INSERT INTO leads (target) VALUES (?)", [(f"@py{i:07d}",) for i in range(n)])
    db.commit()
    ft = FluidTalk(api_key="ft_sk_bench", base_url=base_url)

    def opener(target):
        try:
            res = ft.ai_opener(target=target)
            return ("contacted", res.session_id, res.message, None, target)
        except FluidTalkError as e:
            return ("failed", None, None, f"{e.status}: {e.detail}", target)

    def record(row):
        db.execute("UPDATE leads SET state = ?, session_id = ?, message = ?, error = ? WHERE target = ?", row)
        db.commit()

    todo = [t for (t,) in db.execute("SELECT target FROM leads WHERE state = 'new' ORDER BY target")]
    started = time.perf_counter()
    if threads <= 1:
        for target in todo:
            record(opener(target))
    else:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            for row in pool.map(opener, todo):
                record(row)
    seconds = time.perf_counter() - started
    sent = db.execute("SELECT COUNT(*) FROM leads WHERE state = 'contacted'").fetchone()[0]
    print(json.dumps({"leads": n, "sent": sent, "seconds": seconds}))


if __name__ == "__main__":
    main()
