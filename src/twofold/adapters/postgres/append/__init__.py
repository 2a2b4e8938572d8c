"""The PostgreSQL append path: every way an event gets into ``events``.

- ``writer``: the group-commit writer, its named states, and which path an append takes
  (drawn in its docstring);
- ``requests``: what waits for the writer (single appends, units, jobs) and how each is
  settled;
- ``sql``: the single append's prepared ``INSERT`` (lone or pipelined), encoded for libpq;
- ``loop``: the loop path, libpq non-blocking on the event loop;
- ``thread``: the thread path, a synchronous connection on the writer's thread, and on it
  ``batch`` (settling single appends: retries, conflicts, inline projections) and
  ``units`` (appends to several streams, idempotency keys).

Every statement here announces its transaction before it takes a position
(``_horizon.announcement``), which the readers' visibility horizon relies on.
"""
