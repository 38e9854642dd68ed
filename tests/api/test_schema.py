import json

import pytest
import yaml

CONTRACT_PATHS = {
    "/api/v1/auth/signup", "/api/v1/auth/login", "/api/v1/auth/logout", "/api/v1/auth/token", "/api/v1/me",
    "/api/v1/ws-ticket", "/api/v1/users", "/api/v1/devices", "/api/v1/devices/{device_id}",
    "/api/v1/devices/{device_id}/push-subscription", "/api/v1/conversations",
    "/api/v1/conversations/{conversation_id}", "/api/v1/conversations/{conversation_id}/members",
    "/api/v1/conversations/{conversation_id}/members/{user_id}", "/api/v1/conversations/{conversation_id}/join",
    "/api/v1/conversations/{conversation_id}/messages", "/api/v1/conversations/{conversation_id}/read",
    "/api/v1/conversations/{conversation_id}/delivered", "/api/v1/conversations/{conversation_id}/receipts",
    "/api/v1/messages/{message_id}/info", "/api/v1/messages/{message_id}/flag",
    "/api/v1/uploads",  # v1.1
}


@pytest.fixture
def schema(client, db):
    response = client.get("/api/v1/schema?format=json")
    assert response.status_code == 200
    return json.loads(response.content)


def test_the_schema_is_openapi_3_json_or_yaml(client, db, schema):
    assert schema["openapi"].startswith("3.")
    response = client.get("/api/v1/schema")
    assert response.status_code == 200
    assert yaml.safe_load(response.content)["openapi"] == schema["openapi"]


def test_the_schema_describes_every_contract_endpoint_once(schema):
    assert CONTRACT_PATHS <= set(schema["paths"])
    assert not [path for path in schema["paths"] if path.endswith("/")]


def test_the_schema_documents_the_error_body_on_failures(schema):
    send = schema["paths"]["/api/v1/conversations/{conversation_id}/messages"]["post"]
    assert {"200", "201", "400", "404", "409"} <= set(send["responses"])
    assert send["responses"]["400"]["content"]["application/json"]["schema"]["$ref"].endswith("/Error")


def test_the_schema_states_the_enforced_limits(schema, settings):
    send_request = schema["components"]["schemas"]["SendMessageRequest"]["properties"]
    assert send_request["body"]["maxLength"] == settings.PARLEY_MAX_BODY_LENGTH
    assert send_request["client_msg_id"]["maxLength"] == 64


def test_the_doc_page_renders_without_any_external_script(client, db):
    response = client.get("/api/v1/docs")
    assert response.status_code == 200
    page = response.content.decode()
    assert "/api/v1/conversations/{conversation_id}/messages" in page
    assert 'id="schema-Message"' in page
    assert "<script" not in page


def test_paths_are_also_served_with_a_trailing_slash(api, make_user):
    assert api.as_user(make_user()).get("/api/v1/me/").status_code == 200
    assert api.post("/api/v1/devices/", {}, format="json").status_code == 201


def test_unknown_api_paths_are_a_json_404(client, db):
    for path in ("/api/v1/nope", "/api/v1/nope/", "/api/v2/me"):
        response = client.post(path)
        assert response.status_code == 404
        assert response.json()["code"] == "not_found"


def test_the_upload_is_described_as_multipart_with_its_limits(schema):
    upload = schema["paths"]["/api/v1/uploads"]["post"]
    assert "multipart/form-data" in upload["requestBody"]["content"]
    assert {"201", "400", "404", "413", "429"} <= set(upload["responses"])
    served = schema["paths"]["/api/v1/files/{attachment_id}"]["get"]["responses"]
    assert set(served) == {"200", "404"}
