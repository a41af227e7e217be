"""Two ``kilowatch worker`` processes on one database run each job once per interval."""

from __future__ import annotations

import os
import subprocess
import time

from kilowatch.jobs.offline import JOBS

INTERVAL_S = JOBS[0].interval_s
WATCH_S = 2 * INTERVAL_S + 8  # three turns, and room for a fourth only if one came early


def test_two_workers_run_a_job_once_per_interval(kw_env, tmp_path):
    env = {**os.environ, **kw_env}
    logs = [tmp_path / f"worker-{n}.log" for n in (1, 2)]
    processes = []
    started = time.monotonic()
    for n, log_path in enumerate(logs):
        with open(log_path, "wb") as log:
            processes.append(subprocess.Popen(["kilowatch", "worker", "--job", "offline"],
                                              env=env, stdout=log, stderr=log))
        if n == 0:
            time.sleep(INTERVAL_S / 2)  # out of step, as two workers started apart are
    try:
        time.sleep(WATCH_S - (time.monotonic() - started))
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            assert process.wait(30) == 0
    texts = [log_path.read_text() for log_path in logs]
    runs = sum(text.count("job offline done") for text in texts)
    # Turns at 0, 15 and 30 s: each worker alone would have run three times too.
    assert 2 <= runs <= 3, texts
    assert all("Traceback" not in text for text in texts)
