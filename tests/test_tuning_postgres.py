"""Two workers on one study in a real PostgreSQL server, one killed mid-trial (SIGKILL).

The killed worker's heartbeat stops, so the survivor fails its trial once it is stale (here
after 2 s) and runs it again; the study ends with exactly its budget of finished trials. Needs
a server: ``bash .ci/run`` installs and starts one and sets ``SESSIONBENCH_TEST_PG_URL``; by
hand, point it at an empty database you may write to, e.g.
``SESSIONBENCH_TEST_PG_URL=postgresql://user@localhost:5432/scratch python -m pytest
tests/test_tuning_postgres.py`` (needs ``pip install -e '.[test]'`` for psycopg, SQLAlchemy's PostgreSQL driver).
"""

from __future__ import annotations

import os
import uuid

import pytest
from test_tuning_workers import kill_one_of_two_workers

URL = os.environ.get("SESSIONBENCH_TEST_PG_URL")


@pytest.mark.skipif(
    not URL,
    reason="no PostgreSQL server: set SESSIONBENCH_TEST_PG_URL=postgresql://USER@HOST:PORT/DB "
    "(an empty database) or run `bash .ci/run`, which starts one",
)
def test_two_workers_on_one_postgresql_study_share_the_budget_and_survive_a_kill(tmp_path):
    kill_one_of_two_workers(URL, tmp_path, heartbeat=1, study_name=f"workers-{uuid.uuid4().hex}")
