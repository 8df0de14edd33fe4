"""Lost answers: a proxy between the tills and `patron serve` drops 20 % of the responses
after the server committed the call and holds back 10 % past the tills' timeout. The
tills send every call that got no answer again with its Idempotency-Key; in the end what
they were told matches the books exactly -- every sale, redemption, refund, top-up and
points transfer they were told of is in the database once (0 lost), and nothing else is
(0 duplicates) -- and `patron doctor` is clean.

The proxy's fates and the tills' calls come from one seed (PATRON_TRUST_SEED, printed).
"""

from __future__ import annotations

import os
import random
from pathlib import Path

from patron.core.db import Database
from tests.support.worker import free_port
from tests.trust.processes import Fleet, patron_env
from tests.trust.proxy import LossyProxy
from tests.trust.shop import open_shop
from tests.trust.tills import Till, check_books, finish_tills, start_tills, wait_for_progress

TILLS = 8
CALLS = 120  # answered calls before the tills stop starting new ones
TIMEOUT_S = 3.0  # the tills' timeout; the proxy holds answers back 1 s longer


def test_dropped_and_late_answers_neither_lose_nor_duplicate_a_call(
        database_url: str, db: Database, tmp_path: Path) -> None:
    seed = int(os.environ.get("PATRON_TRUST_SEED", "20261124"))
    print(f"PATRON_TRUST_SEED={seed}")
    rng = random.Random(seed)
    shop = open_shop(db, members=2 * TILLS, email=False)
    port = free_port()
    fleet = Fleet(patron_env(database_url, tmp_path), tmp_path, shop.key)
    try:
        fleet.serve(port)
        with LossyProxy(port, rng.randrange(1 << 30), drop=0.2, delay=0.1,
                        delay_s=TIMEOUT_S + 1) as proxy:
            tills = [Till(f"till{n}", f"http://127.0.0.1:{proxy.port}", shop.key,
                          shop.members[2 * n:2 * n + 2], random.Random(rng.random()),
                          shop.sku, timeout_s=TIMEOUT_S) for n in range(TILLS)]
            threads = start_tills(tills)
            wait_for_progress(tills, CALLS, timeout_s=600)
            finish_tills(tills, threads, timeout_s=240)
            fates = proxy.stats()
    finally:
        fleet.close()
    doctor = fleet.doctor()  # with the servers gone: the books at rest

    for till in tills:
        assert till.errors == [], till.errors
    with db.read() as s:
        counts = check_books(s, tills)
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    # the run did lose answers, and the retries were answered from the stored responses
    assert fates.get("dropped", 0) > 0 and fates.get("delayed", 0) > 0, fates
    assert counts["replayed"] > 0, counts
    print({"seed": seed, **counts, **fates})
