"""Prometheus credentials from Secrets in the policy's namespace (read off the event loop)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import tempfile
from pathlib import Path
from typing import Any

from goodput.api.spec import PrometheusAuth


class SecretError(Exception):
    """A credential the policy names cannot be read, said so a person can fix it."""


def _read_key(api_client: Any, namespace: str, name: str, key: str) -> str:
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    try:
        secret = client.CoreV1Api(api_client).read_namespaced_secret(
            name, namespace, _request_timeout=10
        )
    except ApiException as err:
        if err.status == 404:
            raise SecretError(f"Secret {namespace}/{name} (spec.metrics.auth) not found") from None
        if err.status == 403:
            raise SecretError(
                f"Secret {namespace}/{name} (spec.metrics.auth) is not readable by the"
                " operator (403 Forbidden): grant get on it"
            ) from None
        raise
    data = (secret.data or {}).get(key)
    if data is None:
        raise SecretError(f"Secret {namespace}/{name} has no key {key!r} (spec.metrics.auth)")
    return base64.b64decode(data).decode()


async def prometheus_credentials(
    api_client: Any, namespace: str, auth: PrometheusAuth | None
) -> tuple[str | None, str | None]:
    """(bearer token, CA file path) for the policy's Prometheus; (None, None) without auth."""
    if auth is None:
        return None, None
    token = None
    ca_file = None
    if auth.bearer_token_secret_ref is not None:
        ref = auth.bearer_token_secret_ref
        token = (
            await asyncio.to_thread(_read_key, api_client, namespace, ref.name, ref.key)
        ).strip()
    if auth.ca_secret_ref is not None:
        ref = auth.ca_secret_ref
        pem = await asyncio.to_thread(_read_key, api_client, namespace, ref.name, ref.key)
        # requests wants a path; name it by content so a rotation gives a new file.
        digest = hashlib.sha256(pem.encode()).hexdigest()[:16]
        path = Path(tempfile.gettempdir()) / f"goodput-ca-{digest}.pem"
        if not path.exists():
            path.write_text(pem)
        ca_file = str(path)
    return token, ca_file
