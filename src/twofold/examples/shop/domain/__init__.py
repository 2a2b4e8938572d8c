"""The shop's write side: events, aggregates and their rules. Plain Python, no I/O."""
