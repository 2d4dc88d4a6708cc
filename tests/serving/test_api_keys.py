"""API keys that no HTTP request could carry are refused when the service starts, with a
message that names the key by position and never prints it."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from data_contracts.settings import ServingSettings, Settings

COBRANZA = str(Path(sys.executable).with_name("cobranza"))
UNUSABLE = [
    ("clé-de-prueba-secreta", "printable ASCII"),  # UTF-8 on the wire never equals it
    ("llave\tsecreta-de-prueba", "printable ASCII"),
    (" llave-secreta-de-prueba", "space"),  # HTTP strips the spaces around a header value
    ("", "empty"),
]


@pytest.mark.parametrize(("key", "reason"), UNUSABLE)
def test_keys_no_header_can_carry_are_refused_without_printing_them(
    key: str, reason: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ValidationError) as caught:
        ServingSettings(api_keys=[SecretStr("a-good-key"), SecretStr(key)])
    assert "API key 2" in str(caught.value) and reason in str(caught.value)
    monkeypatch.setenv("COBRANZA_SERVING__API_KEYS", json.dumps(["a-good-key", key]))
    with pytest.raises(ValidationError) as caught:
        Settings()
    message = str(caught.value)
    assert "API key 2" in message and reason in message
    if key:
        assert key.strip() not in message and "a-good-key" not in message


def test_the_service_refuses_to_start_with_a_non_ascii_key() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    key = "contraseña-de-prueba"
    env = {**os.environ, "COBRANZA_SERVING__API_KEYS": json.dumps([key], ensure_ascii=False)}
    done = subprocess.run(
        [COBRANZA, "serve", "--port", str(port)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr[-500:]
    assert "API key 1" in done.stderr and "printable ASCII" in done.stderr
    assert key not in done.stdout + done.stderr
    assert "Traceback" not in done.stderr
