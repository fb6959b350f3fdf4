"""How records are framed on Kafka, chosen per deployment: the one model both deployables' ``kafka``
sections and the tools share (docs/wire-format.md).

``single_object`` (the default) is Avro single-object encoding: readers find the writer schema among
the versions kept in ``schemas/versions``. ``confluent`` is the Confluent Schema Registry framing
(magic byte 0x00, 4-byte big-endian schema id, Avro body) for teams that run a registry: writers
register their schemas under ``<topic>-value``, readers look ids up there, and still read the
single-object messages already in a topic.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import unquote, urlsplit, urlunsplit

from pydantic import SecretStr, ValidationError, model_validator

from common.config import StrictConfig
from common.errors import ConfigError

if TYPE_CHECKING:
    from schemas import Codec
    from schemas.confluent import ConfluentCodec

WireFormatName = Literal["single_object", "confluent"]
WIRE_FORMATS: tuple[WireFormatName, ...] = ("single_object", "confluent")
# The registry's basic auth ("user:password") for the command-line tools (a flag would show it in `ps`).
REGISTRY_AUTH_ENV = "SCHEMA_REGISTRY_BASIC_AUTH"


class WireFormatConfig(StrictConfig):
    """``format`` and, for ``confluent``, the registry: its url (``http(s)://host:port``, several
    comma-separated, or ``mock://NAME`` for confluent-kafka's in-process mock) and its basic auth
    ``user:password`` (a SecretStr; credentials written in the url are moved here, so the url can be
    shown in logs and errors)."""

    format: WireFormatName = "single_object"
    schema_registry_url: str | None = None
    schema_registry_auth: SecretStr | None = None

    @model_validator(mode="before")
    @classmethod
    def _credentials_out_of_the_url(cls, data: Any) -> Any:
        url = data.get("schema_registry_url") if isinstance(data, dict) else None
        if not isinstance(url, str) or "@" not in url:
            return data
        parts = urlsplit(url)
        if parts.username is None and parts.password is None:
            return data
        moved = {**data, "schema_registry_url": urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))}
        if data.get("schema_registry_auth") is None:
            moved["schema_registry_auth"] = f"{unquote(parts.username or '')}:{unquote(parts.password or '')}"
        return moved

    @model_validator(mode="after")
    def _check(self) -> WireFormatConfig:
        url, auth = self.schema_registry_url, self.schema_registry_auth
        if self.format == "confluent":
            if not url:
                raise ValueError("format confluent needs schema_registry_url (http(s)://host:port)")
            bad = [u for u in url.split(",") if not u.strip().startswith(("http://", "https://", "mock://"))]
            if bad:
                raise ValueError(
                    f"schema_registry_url must be http(s)://host:port (or mock://NAME), got {bad[0].strip()!r}"
                )
            if auth is not None and ":" not in auth.get_secret_value():
                raise ValueError("schema_registry_auth must be user:password")
        elif url is not None or auth is not None:
            raise ValueError("schema_registry_url / schema_registry_auth are set but format is single_object")
        return self

    @classmethod
    def from_flags(cls, wire_format: str | None, registry_url: str | None) -> WireFormatConfig:
        """The command-line tools' ``--wire-format`` and ``--schema-registry-url``, with the basic auth
        from the environment (``SCHEMA_REGISTRY_BASIC_AUTH``); ConfigError (one line naming the flags)."""
        auth = (os.environ.get(REGISTRY_AUTH_ENV) or None) if wire_format == "confluent" else None
        data = {"format": wire_format or "single_object", "schema_registry_url": registry_url,
                "schema_registry_auth": auth}
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            problem = str(exc.errors()[0]["msg"]).removeprefix("Value error, ")
            raise ConfigError(f"--wire-format / --schema-registry-url: {problem}") from None

    def codec(self, base: Codec | None = None) -> Codec | ConfluentCodec:
        """What encodes and decodes with this framing: the schemas codec itself for single_object, the
        Confluent framing over it (the process's client of this registry) for confluent."""
        from schemas import Codec

        codec = base or Codec.default()
        if self.format == "single_object":
            return codec
        from schemas.confluent import ConfluentCodec

        assert self.schema_registry_url is not None  # (checked at validation)
        auth = self.schema_registry_auth.get_secret_value() if self.schema_registry_auth is not None else None
        return ConfluentCodec.connect(self.schema_registry_url, auth, codec)
