"""The bank test: money under faults and crashes, counted to the paisa afterwards.

`run_bank` starts `bhuktani isp-sim` with seeded faults (latency, refusals, 5xx, unreadable
answers, connections dropped before and after the ISP applies a payment) and `bhuktani
serve` on a fixed port with its LIVE providers pointed at that simulator. Many client tasks
pay for plans across several merchants while a killer SIGKILLs the gateway at seeded
moments and restarts it on the same port. Then the gateway stays up until reconciliation
and callback delivery have finished, and the books are checked against what the clients
were told and against what the ISP applied.

Two environments run side by side:

- LIVE (most payments): the documented users (`jeetenaug4` on several HashCNet V2 slugs,
  `Pradhanang` on Arrownet, `khaltiUser` at the single-step services, and each other
  catalogue group's own example) over HTTP to isp-sim, which faults them; scenario users
  are never faulted, so they are not used here.
- TEST (a smaller share): TEST tokens reach the in-process sandbox, whose scenario users
  (`slow-user`, `flaky-user`, `lost-user`, `refuse-user`) produce Processing and refusals
  without faults.

Single-step payments are answered Queued and sent by the reconciler, so kills land between
the hold and the send as well. A catalogue group's example pays a bill, a due or a plan
that may be sold once: paid by an earlier intent (per merchant in TEST, at all in LIVE,
where isp-sim keeps one copy of its subscribers), it is refused before anything is held
(4000, 7000: the client is told "Refused") or fails at the ISP and is refunded; two
intents racing for it must never both be paid.

Callbacks of both go to a receiver in this process (tests.receiver), which checks each
signature with the `standardwebhooks` library as it arrives, as a merchant does, with the
secret of the callback's environment. The receiver is on
loopback, which LIVE callbacks may only reach with BHUKTANI_CALLBACK_ALLOW_PRIVATE (a
staging setting, set here; tests/callbacks/test_delivery.py proves the default refuses it).

Every merchant has both tokens and the receiver as its callback URL.

What is asserted, all of it collected into `Report.problems` rather than stopping at the
first: the ledger's own invariants (tests.support.assert_books_balance); every reference a
client sent is in exactly one final state or flagged, and agrees with what the client was
told; each merchant's balance is its loads minus its Success amounts plus its refunds, in
the books and through GET /api/balance; the payments the ISP applied (/_sim/applied for
LIVE, the sandbox's table for TEST) are exactly our Success payments, same amount and
receipt; every callback owed carries its payment's final state and reached the receiver
signed.

Replaying: the seed fixes the plan (intents, merchants, credits, kill points) and the
simulator's stream of fates; which request draws which fate still follows the interleaving
of concurrent requests, so a replay runs the same plan under the same faults, not the same
schedule to the microsecond.
"""

from __future__ import annotations

from tests.bank.checks import Report
from tests.bank.run import run_bank

__all__ = ["Report", "run_bank"]
