"""Handler paths are checked before a job type is registered."""

from __future__ import annotations

import pytest

import jobqueue
from jobqueue import errors
from jobqueue.client import Client
from jobqueue.handlers import HandlerError, load_handler, register_job_type, validate_handler
from jobqueue.tasks.demo import DEMO_TYPES, register_demo_types

SAMPLES = "tests.integration.handler_samples"


@pytest.mark.parametrize(
    "path",
    [
        f"{SAMPLES}:good",
        f"{SAMPLES}.good",
        f"{SAMPLES}:good_async",
        f"{SAMPLES}:Namespace.nested",
    ],
)
def test_good_handlers_register(client: Client, path: str) -> None:
    registered = register_job_type(client, "t", path, queue="q1")
    assert registered.handler == path
    assert [t.name for t in client.list_job_types()] == ["t"]


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("not a path", "is not a dotted path"),
        ("justaname", "names no module"),
        ("tests.integration.no_such_module:run", "failed to import: ModuleNotFoundError"),
        ("tests.integration.broken_handler_module:run", "broken on purpose"),
        (f"{SAMPLES}:missing", "has no attribute 'missing'"),
        (f"{SAMPLES}:NOT_CALLABLE", "is a int, not callable"),
        (f"{SAMPLES}:no_context", "must accept the job context"),
        (f"{SAMPLES}:positional_only_params", "requires positional-only arguments"),
    ],
)
def test_bad_handlers_are_refused_with_a_clear_message_and_change_nothing(
    client: Client, path: str, message: str
) -> None:
    with pytest.raises(errors.InvalidJobType, match=message) as caught:
        register_job_type(client, "t", path)
    assert caught.value.detail == {"handler": path}
    assert client.list_job_types() == []


def test_a_bad_handler_does_not_replace_a_good_one(client: Client) -> None:
    register_job_type(client, "t", f"{SAMPLES}:good")
    with pytest.raises(errors.InvalidJobType):
        register_job_type(client, "t", f"{SAMPLES}:no_context")
    (kept,) = client.list_job_types()
    assert kept.handler == f"{SAMPLES}:good"


def test_package_level_register_job_type_validates(client: Client) -> None:
    with pytest.raises(errors.InvalidJobType, match="not callable"):
        jobqueue.register_job_type(client, "t", f"{SAMPLES}:NOT_CALLABLE")


def test_load_handler_caches_and_raises_handler_error() -> None:
    assert load_handler(f"{SAMPLES}:good") is load_handler(f"{SAMPLES}.good")
    with pytest.raises(HandlerError, match="failed to import"):
        load_handler("tests.integration.no_such_module:run")
    with pytest.raises(HandlerError, match="not callable"):
        validate_handler(f"{SAMPLES}:NOT_CALLABLE")


def test_demo_types_register(client: Client) -> None:
    registered = register_demo_types(client)
    assert sorted(t.name for t in registered) == sorted(DEMO_TYPES)
    assert sorted(t.name for t in client.list_job_types()) == sorted(DEMO_TYPES)
