"""Config of the MQTT link, the checkout display and the on-box history."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from edge.config_base import Strict

DEFAULT_PREFIX = "storesense/v1"

_HOST_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")


class TlsConfig(Strict):
    ca_file: str | None = Field(default=None, description="CA bundle that signed the broker's certificate")
    cert_file: str | None = Field(default=None, description="client certificate (mutual TLS)")
    key_file: str | None = Field(default=None, description="client key (mutual TLS)")
    insecure_skip_verify: bool = Field(default=False, description="accept any broker certificate (testing only)")


class HomeAssistantConfig(Strict):
    """MQTT discovery for Home Assistant: each lane's wait and queue length and each zone's
    occupancy appear as sensors of one device per box, unavailable when the edge is not online."""

    enabled: bool = Field(default=False, description="publish discovery configs (retained) on every connection")
    discovery_prefix: str = Field(
        default="homeassistant", pattern=r"^[A-Za-z0-9_-]+(/[A-Za-z0-9_-]+)*$",
        description="Home Assistant's discovery prefix (its MQTT integration setting)",
    )


class MqttConfig(Strict):
    enabled: bool = Field(default=True, description="false: run without a broker (history and --events only)")
    host: str = Field(default="127.0.0.1", description="broker host")
    port: int = Field(default=1883, ge=1, le=65535, description="broker port")
    prefix: str = Field(default=DEFAULT_PREFIX, description="first topic level")
    device_id: str = Field(default="edge-1", pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$", description="this box's id: client id and availability topic")
    keepalive_s: int = Field(default=10, ge=2, le=3600, description="MQTT keepalive; a dead link is noticed within 1.5x this")
    protocol: Literal["5", "3.1.1"] = Field(default="5", description="MQTT version; 3.1.1 for old brokers (no message expiry)")
    username: str | None = Field(default=None, description="broker user")
    # secrets never inline: name an environment variable or a file
    password_env: str | None = Field(default=None, description="environment variable holding the broker password")
    password_file: str | None = Field(default=None, description="file holding the broker password (e.g. a systemd credential)")
    tls: TlsConfig | None = Field(default=None, description="TLS to the broker")
    outbox_path: str = Field(default="outbox.db", description="relative to the store data_dir")
    outbox_max_messages: int = Field(default=100_000, ge=10, description="durable events kept while the broker is away; oldest dropped beyond")
    state_expiry_s: int = Field(default=120, ge=1, le=86400, description="MQTT 5 message expiry for live state")
    reconnect_max_backoff_s: float = Field(default=30.0, gt=0.0, le=600.0, description="longest wait between reconnection attempts")
    home_assistant: HomeAssistantConfig = Field(
        default_factory=HomeAssistantConfig, description="Home Assistant MQTT discovery (off by default)"
    )

    @field_validator("host")
    @classmethod
    def _host_ok(cls, v: str) -> str:
        # a host that cannot resolve would run for ever without publishing a thing
        import ipaddress

        try:
            ipaddress.ip_address(v)
            return v
        except ValueError:
            pass
        labels = v.rstrip(".").split(".")
        if not v or len(v) > 253 or not all(_HOST_LABEL.match(label) for label in labels):
            raise ValueError(f"host {v[:60]!r} is neither an IP address nor a host name (letters, digits, '-', '.')")
        return v

    @field_validator("prefix")
    @classmethod
    def _prefix_ok(cls, v: str) -> str:
        # every topic is {prefix}/{store}/...: an empty level or a wildcard makes each publish fail
        levels = v.split("/")
        if not v or any(not level for level in levels):
            raise ValueError(f"prefix {v!r} needs non-empty levels separated by single '/', e.g. storesense/v1")
        if any(c in v for c in "+#") or v.startswith("$") or any(ord(c) < 32 for c in v):
            raise ValueError(f"prefix {v[:60]!r} must not contain '+', '#' or control characters, nor start with '$'")
        return v

    @model_validator(mode="after")
    def _one_secret(self) -> MqttConfig:
        if self.password_env and self.password_file:
            raise ValueError("give password_env or password_file, not both")
        return self


class DisplayConfig(Strict):
    host: str = Field(default="127.0.0.1", description="listen address of the display server")
    port: int = Field(default=8080, ge=0, le=65535, description="listen port of the display server")
    languages: list[Literal["zh", "en"]] = Field(default=["zh", "en"], min_length=1, description="languages shown on the screen, in order")
    stale_after_s: float = Field(default=10.0, gt=0.0, le=600.0, description="a lane whose data is older than this shows as unavailable")
    title: str = Field(default="Checkout", description="page title")
    setup_password_env: str | None = Field(default=None, description="enables /setup with this password")
    capacity_zones: list[str] = Field(
        default_factory=list, max_length=8,
        description="ids of zones with a capacity (e.g. fitting rooms) shown as a card after the lanes: "
        "free places, full, people waiting",
    )


class HistoryConfig(Strict):
    enabled: bool = Field(default=True, description="keep metrics on the box for reports")
    path: str = Field(default="history.db", description="relative to the store data_dir")
    retention_days: float = Field(default=90.0, gt=0.0, le=3650.0, description="older history is deleted")
    max_size_mb: float = Field(default=1024.0, gt=0.0, description="the oldest history is deleted beyond this size")
