"""Property-based API fuzzing from the OpenAPI schema (schemathesis + hypothesis): no
generated request makes the server fail (5xx) or answer outside its documented responses.

Schema-valid data may still be refused with a 422 (ingestion and the engine check more than
a schema can say), so schemathesis' positive-data-acceptance check is left out.
"""
from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from app.main import create_app
from tests.service_fixtures import embedded_settings


def test_no_request_from_the_schema_breaks_the_api(tmp_path):
    app = create_app(embedded_settings(tmp_path / "data"))
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 14
    for operation in operations:
        @given(case=operation.as_strategy())
        @settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def check(case):
            case.call_and_validate(excluded_checks=[positive_data_acceptance])

        check()
