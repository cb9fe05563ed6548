"""Signal storms: thousands of SIGUSR1/SIGHUP with a SIGTERM in the middle. The TERM is never
lost, compactions coalesce, no wakeup-fd warnings appear, and the exit is clean."""

from __future__ import annotations

import os
import random
import signal
import threading

SIGNALS = 5000


def test_a_term_in_the_middle_of_a_storm_is_never_lost(make_foreground):
    server = make_foreground("--segment-size=65536")
    client = server.client()
    for round_ in range(5):  # garbage, so the storm's compactions have work to do
        client.mset({b"k%d" % i: b"%d" % round_ * 100 for i in range(500)})
    client.close()
    rng = random.Random(5)
    sent = []

    def storm() -> None:
        for i in range(SIGNALS):
            if i == SIGNALS // 2:
                os.kill(server.pid, signal.SIGTERM)
                sent.append("TERM")
            try:
                os.kill(server.pid, rng.choice([signal.SIGUSR1, signal.SIGHUP]))
            except ProcessLookupError:
                return  # it finished shutting down while we were still signalling
            sent.append(1)

    stormer = threading.Thread(target=storm, daemon=True)
    stormer.start()
    assert server.wait(60) == 0  # the TERM got through and the drain finished
    stormer.join(30)
    assert "TERM" in sent
    output = server.log()
    assert "SIGTERM: shutting down" in output
    assert "wakeup" not in output.lower() and "Traceback" not in output
    requested = output.count("compaction requested (SIGUSR1)")
    assert requested <= output.count("compaction started") + 1  # coalesced, never piled up
    assert output.count("compaction started") < len(sent) // 20
