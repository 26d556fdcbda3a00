"""`Idempotency-Key` on POST /api/jobs: a retried submission never creates a second job."""

import threading
import time

import pytest

from quaero import idempotency
from quaero.models import Job

BACKENDS = ["sqlite", "postgresql"]

BODY = {"type": "noop", "name": "once", "payload": {"n": 1}}


def post(client, key, body=BODY):
    return client.post("/api/jobs", json=body, headers={"Idempotency-Key": key})


def test_same_key_twice_is_one_job_201_then_200(client):
    first = post(client, "order-42")
    second = post(client, "order-42")
    assert first.status_code == 201, first.get_json()
    assert second.status_code == 200, second.get_json()
    assert second.get_json()["id"] == first.get_json()["id"]
    assert second.headers["Location"] == first.headers["Location"]
    assert Job.select().count() == 1


def test_other_keys_and_no_key_create_new_jobs(client):
    assert post(client, "a").status_code == 201
    assert post(client, "b").status_code == 201
    assert client.post("/api/jobs", json=BODY).status_code == 201
    assert client.post("/api/jobs", json=BODY).status_code == 201
    assert Job.select().count() == 4


def test_key_reused_for_another_body_is_422_and_creates_nothing(client):
    assert post(client, "k1").status_code == 201
    response = post(client, "k1", {**BODY, "payload": {"n": 2}})
    assert response.status_code == 422
    error = response.get_json()["error"]
    assert error["code"] == "idempotency_key_reused" and "Idempotency-Key" in error["fields"]
    assert Job.select().count() == 1


@pytest.mark.parametrize(
    "key, problem",
    [("", "empty"), ("x" * 201, "200"), ("caf\u00e9", "ASCII"), ("a\tb", "ASCII")],
)
def test_invalid_key_is_400_naming_the_header(client, key, problem):
    response = client.post(
        "/api/jobs", json=BODY, headers=[("Idempotency-Key", key.encode("utf-8").decode("latin-1"))]
    )
    assert response.status_code == 400, response.get_json()
    error = response.get_json()["error"]
    assert "Idempotency-Key" in error["fields"] and problem in error["fields"]["Idempotency-Key"]
    assert Job.select().count() == 0


def test_longest_printable_key_is_accepted(client):
    key = "".join(chr(32 + i % 95) for i in range(200))
    assert post(client, key).status_code == 201
    assert post(client, key).status_code == 200


def test_key_older_than_24_hours_is_forgotten(client, services):
    first = post(client, "old").get_json()
    services.db.execute_sql(
        f"UPDATE idempotency_keys SET created_at = {services.db.param}",
        (time.time() - idempotency.KEY_TTL_SECONDS - 1,),
    )
    again = post(client, "old")
    assert again.status_code == 201 and again.get_json()["id"] != first["id"]


def test_concurrent_requests_with_one_key_create_one_job(live_server):
    import requests

    answers = []

    def submit():
        answers.append(
            requests.post(
                f"{live_server}/api/jobs",
                json=BODY,
                headers={"Idempotency-Key": "race"},
                timeout=30,
            )
        )

    threads = [threading.Thread(target=submit) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(a.status_code for a in answers) == [200, 200, 200, 201]
    assert len({a.json()["id"] for a in answers}) == 1
    assert Job.select().count() == 1
