"""Endpoints, keys and the fail-fast checks users hit first."""
import pytest

from lib.core.client import LOCAL_KEY, Endpoint, check_endpoint
from lib.core.errors import UserError


def test_remote_endpoint_without_key_names_the_variable(monkeypatch):
    monkeypatch.delenv("SHEAR_TEST_KEY", raising=False)
    ep = Endpoint(base_url="https://api.openai.com/v1", model="gpt-4o-mini", api_key_env="SHEAR_TEST_KEY")
    with pytest.raises(UserError, match="export SHEAR_TEST_KEY"):
        ep.api_key()


def test_remote_key_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("SHEAR_TEST_KEY", "sk-test-value")
    ep = Endpoint(base_url="https://api.openai.com/v1", model="gpt-4o-mini", api_key_env="SHEAR_TEST_KEY")
    assert ep.api_key() == "sk-test-value"
    assert "sk-test-value" not in repr(ep.public())
    assert not ep.is_local


@pytest.mark.parametrize("url", ["http://127.0.0.1:8000/v1", "http://localhost:1/v1", "http://127.0.0.5:1/v1"])
def test_loopback_needs_no_key(monkeypatch, url):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    ep = Endpoint(base_url=url, model="m")
    assert ep.is_local and ep.api_key() == LOCAL_KEY


def test_unreachable_teacher_is_one_line():
    ep = Endpoint(base_url="http://127.0.0.1:9/v1", model="m")
    with pytest.raises(UserError, match="cannot reach the teacher at http://127.0.0.1:9/v1"):
        check_endpoint(ep, timeout=3)


def test_reachable_local_server_passes_the_check(local_endpoint):
    check_endpoint(local_endpoint)
