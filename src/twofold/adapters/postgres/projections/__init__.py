"""Running projections on PostgreSQL: who runs which one, and how the others hear of it.

- ``coordination``: ``LeaseCoordination``, a process's part (the ``Coordination`` port of
  ``twofold.application.coordination``): it follows every checkpoint, and contends for the
  lease of each projection it may run, running it only while the lease holds;
- ``leases``: a lease is a session-level advisory lock taken on a connection of its own;
  ``TAKEN`` looks in ``pg_locks`` (on a pooled connection) so that waiting holds none
  (the relay's lease per destination, ``relay_lease``, is one of these too);
- ``lanes``: a thread and one synchronous connection: the read store writes each
  projection's views and checkpoint through one (a lease's lane is its fence, and a lane
  that lost its connection raises ``LeaseLostError``);
- ``checkpoints``: after a batch commits, ``NOTIFY`` with the new checkpoints (paced), and
  one LISTEN connection per process that wakes queries waiting for ``min_position``.

The path of a batch: ``LeaseCoordination`` takes the lease, hands its lane to the read
store (``PostgresReadStore.use_lane``), and the runner's batches commit views and
checkpoint on that lane's connection, then ``CheckpointNotifier`` tells the other processes.
The SQL of the bookkeeping tables (``projections``, ``checkpoints``, ``dead_letters``) is
the read store's (``views_migrations``, ``views_ops``), since its transactions also write
the views. Nothing is imported here, so the read store may import these modules and
``coordination`` may import the read store without a cycle.
"""
