"""The project's guards and the basics every caller meets first."""

import platform
import sysconfig
from pathlib import Path

import requests


def test_platform_folder_does_not_shadow_stdlib():
    assert Path(platform.__file__).parent == Path(sysconfig.get_paths()["stdlib"])
    assert not (Path(__file__).parents[1] / "platform" / "__init__.py").exists()


def test_anonymous_caller_gets_401_everywhere(live_platform):
    for method, path in [
        ("GET", "/dicomweb/studies"),
        ("POST", "/dicomweb/studies"),
        ("GET", "/dicomweb/studies/1.2.3"),
        ("POST", "/api/v1/studies/1.2.3/complete"),
    ]:
        response = requests.request(method, live_platform + path, timeout=10)
        assert response.status_code == 401, (method, path)
        assert response.headers["WWW-Authenticate"] == "Bearer"


def test_unknown_token_gets_401(live_platform):
    response = requests.get(
        live_platform + "/dicomweb/studies", headers={"Authorization": "Bearer nope"}, timeout=10
    )
    assert response.status_code == 401


def test_openapi_schema_and_swagger_are_served(live_platform):
    schema = requests.get(live_platform + "/api/schema/?format=json", timeout=10)
    assert schema.status_code == 200
    paths = schema.json()["paths"]
    documented = ["/api/v1/studies/{study_uid}/complete", "/api/v1/organizations/{id}", "/api/v1/ai-services/{code}",
                  "/api/v1/studies/{study_uid}/results", "/api/v1/worklist", "/api/v1/webhook"]
    assert [path for path in documented if path not in paths] == []
    assert requests.get(live_platform + "/api/docs/", timeout=10).status_code == 200
