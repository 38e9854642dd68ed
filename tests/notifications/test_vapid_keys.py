"""`manage.py vapid_keys`: keys that sign pushes a push service accepts, as environment lines."""
from __future__ import annotations

import io
import stat

import pytest
from django.core.management import CommandError, call_command

from .push_service import LocalPushService

pytestmark = pytest.mark.django_db


def generate(*args: str) -> dict[str, str]:
    out = io.StringIO()
    call_command("vapid_keys", *args, stdout=out, stderr=io.StringIO())
    return dict(line.split("=", 1) for line in out.getvalue().splitlines())


def test_the_keys_it_prints_sign_pushes_the_push_service_accepts(make_user, make_group, make_device, api, settings,
                                                                 send, worker):
    env = generate("--subject", "mailto:ops@example.com")
    assert sorted(env) == ["PARLEY_VAPID_PRIVATE_KEY", "PARLEY_VAPID_PUBLIC_KEY", "PARLEY_VAPID_SUBJECT"]
    for name, value in env.items():
        setattr(settings, name, value)
    alice, bob = make_user(), make_user()
    conversation = make_group(alice, [bob])

    with LocalPushService(vapid_public_key=env["PARLEY_VAPID_PUBLIC_KEY"],
                          vapid_subject="mailto:ops@example.com") as service:
        settings.PARLEY_PUSH_INSECURE_TEST_ORIGINS = [service.origin]  # plain http on 127.0.0.1: tests only
        subscription = service.subscribe()
        device = make_device(bob)
        api.as_user(bob).post(f"/api/v1/devices/{device.pk}/push-subscription", subscription.as_json(), format="json")
        send(alice, conversation, body="signed")
        worker.run()

    assert service.attempts() == [201]


def test_every_run_makes_a_new_pair():
    assert generate()["PARLEY_VAPID_PRIVATE_KEY"] != generate()["PARLEY_VAPID_PRIVATE_KEY"]


def test_it_writes_the_lines_to_a_file_only_its_owner_can_read(tmp_path):
    target = tmp_path / "push.env"
    printed = generate("--output", str(target))

    assert dict(line.split("=", 1) for line in target.read_text().splitlines()) == printed
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


def test_it_will_not_replace_keys_in_a_file_without_force(tmp_path):
    target = tmp_path / "push.env"
    first = generate("--output", str(target))

    with pytest.raises(CommandError, match="--force"):
        generate("--output", str(target))
    assert dict(line.split("=", 1) for line in target.read_text().splitlines()) == first

    second = generate("--output", str(target), "--force")
    assert dict(line.split("=", 1) for line in target.read_text().splitlines()) == second


@pytest.mark.parametrize("subject", ["admin@example.com", "http://example.com", "mailto:nobody"])
def test_a_subject_push_services_cannot_use_is_refused(subject):
    with pytest.raises(CommandError, match="mailto"):
        generate("--subject", subject)
