"""The contract suites run on every backend; PostgreSQL's need its fixtures."""

from tests.integration.postgres.conftest import pg_schema, postgres_url

__all__ = ["pg_schema", "postgres_url"]
