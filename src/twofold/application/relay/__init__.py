"""Moving events between processes (DESIGN 6): the bus message format, the Publisher port,
the relay that follows the log to a broker, and runners fed by a bus."""
