"""Pure rules of the ingest core: status mapping and update expressions."""

import pytest

from callbridge.core.terms import Outcome
from callbridge.pbx.cloudpbx.ingest import history_outcome
from callbridge.store.updates import Update


@pytest.mark.parametrize(
    ("direction", "status", "outcome"),
    [
        ("in", "Success", Outcome.ANSWERED),
        ("out", "Success", Outcome.ANSWERED),
        ("in", "Missed", Outcome.MISSED),
        ("in", "missed", Outcome.MISSED),
        ("in", "Cancel", Outcome.MISSED),
        ("out", "Cancel", Outcome.NO_ANSWER),
        ("out", "Busy", Outcome.BUSY),
        ("out", "NotAvailable", Outcome.NOT_AVAILABLE),
        ("out", "NotAllowed", Outcome.NOT_ALLOWED),
        ("out", "NotFound", Outcome.NOT_FOUND),
        ("out", "Exploded", Outcome.UNKNOWN),
    ],
)
def test_history_status_maps_to_the_canonical_outcome(direction, status, outcome):
    assert history_outcome(direction, status) is outcome


def test_update_aliases_every_name_and_skips_none():
    update = Update().set(user="andy", duration=5, link=None).set_if_absent(created_at="t").add_to_set("ringing", "a")
    request = update.request()
    assert request["UpdateExpression"] == "SET #n0 = :v0, #n1 = :v1, #n2 = if_not_exists(#n2, :v2) ADD #n3 :v3"
    assert request["ExpressionAttributeNames"] == {
        "#n0": "user",
        "#n1": "duration",
        "#n2": "created_at",
        "#n3": "ringing",
    }
    assert request["ExpressionAttributeValues"][":v3"] == {"SS": ["a"]}
