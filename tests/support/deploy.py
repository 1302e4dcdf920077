"""Names the deployment files (compose, Kubernetes) may use, taken from the code."""

from __future__ import annotations

from tickpipe_api.settings import ApiSettings
from tickpipe_shared.config import Settings

#: Settings that are secrets: on Kubernetes never in the ConfigMap or the env, only as a file
#: of a mounted Secret named by TICKPIPE_<FIELD>_FILE.
#: Every SecretStr field of the settings (the DSN, passwords, API keys, tokens).
SECRET_SETTINGS = frozenset(
    f"{cls.model_config.get('env_prefix', '')}{name}".upper()
    for cls in (Settings, ApiSettings)
    for name, field in cls.model_fields.items()
    if "SecretStr" in str(field.annotation)
)


def setting_env_names() -> set[str]:
    """``TICKPIPE_<FIELD>`` of every Settings field (and ``TICKPIPE_API_<FIELD>`` of the API's)."""
    out = set()
    for cls in (Settings, ApiSettings):
        prefix = cls.model_config.get("env_prefix", "")
        out |= {f"{prefix}{name}".upper() for name in cls.model_fields}
    return out
