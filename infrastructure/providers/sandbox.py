"""Credentials for the sandbox: the provider simulator stands in for every unconfigured provider.

The simulator and Herald must agree on them (an API key, the ECDSA key pair SendGrid signs
its Event Webhook with, a Twilio auth token, a Firebase service account), so they are
generated once and kept in HERALD_DEV_DIR, like the dev signing key. Nothing here is a
real secret: whoever can read the dev directory can already talk to the simulator.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from infrastructure.settings import Settings

FILE_NAME = "sandbox-credentials.json"
FCM_PROJECT = "herald-sandbox"


@dataclass(frozen=True)
class SandboxCredentials:
    sendgrid_api_key: str
    sendgrid_signing_key_pem: str  # ECDSA P-256 private key: the simulator signs events
    sendgrid_verification_key: str  # its public key as SendGrid shows it: base64 DER
    twilio_account_sid: str
    twilio_auth_token: str
    fcm_private_key_pem: str  # RSA: signs the service account's OAuth assertion
    fcm_private_key_id: str

    def fcm_service_account(self, simulator_url: str) -> dict[str, str]:
        """The service-account JSON firebase-admin loads, with its token URI on the simulator."""
        return {
            "type": "service_account",
            "project_id": FCM_PROJECT,
            "private_key_id": self.fcm_private_key_id,
            "private_key": self.fcm_private_key_pem,
            "client_email": f"herald@{FCM_PROJECT}.iam.gserviceaccount.com",
            "client_id": "1",
            "token_uri": f"{simulator_url}/token",
        }


def _generate() -> dict[str, Any]:
    signing = ec.generate_private_key(ec.SECP256R1())
    public_der = signing.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return {
        "sendgrid_api_key": "SG." + secrets.token_urlsafe(32),
        "sendgrid_signing_key_pem": _pem(signing),
        "sendgrid_verification_key": base64.b64encode(public_der).decode(),
        "twilio_account_sid": "AC" + secrets.token_hex(16),
        "twilio_auth_token": secrets.token_hex(16),
        "fcm_private_key_pem": _pem(rsa_key),
        "fcm_private_key_id": secrets.token_hex(20),
    }


def _pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def load_sandbox(settings: Settings) -> SandboxCredentials:
    """The dev directory's sandbox credentials, created on first use.

    Several processes may start at once; the file appears atomically (link of a complete
    temporary file), and whoever loses the race reads the winner's.
    """
    directory = settings.dev_path
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / FILE_NAME
    if not path.exists():
        temporary = directory / f".{FILE_NAME}.{os.getpid()}.{secrets.token_hex(4)}"
        temporary.touch(mode=0o600)
        temporary.write_text(json.dumps(_generate()))
        with contextlib.suppress(FileExistsError):
            os.link(temporary, path)
        temporary.unlink()
    return SandboxCredentials(**json.loads(Path(path).read_text()))


def provider_modes(settings: Settings) -> dict[str, str]:
    """Each provider's mode: "live" when its credentials are configured, else "sandbox"."""
    configured = {
        "sendgrid": settings.sendgrid_api_key is not None,
        "twilio": settings.twilio_account_sid is not None,
        "fcm": settings.fcm_service_account_file is not None,
    }
    return {name: "live" if live else "sandbox" for name, live in configured.items()}
