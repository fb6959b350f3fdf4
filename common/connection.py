"""How a deployable reaches Kafka and Redis: the one connection model the join and the trainer embed.

:class:`KafkaConnection` (brokers, client id, SASL / TLS, the values' framing, extra librdkafka settings
per client role) and :class:`RedisConnection` (url, ACL user, password, TLS) hold the keys both
deployables accept under ``kafka:`` / ``redis:`` (the trainer: ``sidecar.kafka`` / ``sidecar.redis``);
each deployable's own model derives from them and adds what only it has (consumer group, topics, key
prefix). Their defaults are the ``make up`` stack's (:mod:`common.defaults`).

Secrets are :class:`pydantic.SecretStr`: every printed form (repr, dumps, validation errors, logs)
shows ``**********``. Two builders reveal them, to construct clients only:
:meth:`KafkaConnection.client_settings` (the confluent-kafka settings) and
:meth:`RedisConnection.client` (a ``redis.Redis``; :meth:`RedisConnection.client_kwargs` its arguments).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Literal
from urllib.parse import unquote, urlsplit, urlunsplit

from pydantic import Field, SecretStr, field_validator, model_validator

from common.config import StrictConfig
from common.defaults import kafka_bootstrap_servers, redis_url
from common.wire import WireFormatConfig

if TYPE_CHECKING:
    import redis

KafkaRole = Literal["consumer", "producer", "admin"]
SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]

_REDIS_SCHEMES = ("redis://", "rediss://", "unix://")
# librdkafka settings that hold a secret: they belong in the security section, where they are SecretStr.
_SECRET_WORDS = ("password", "secret", "jaas", ".pem", "token")


class KafkaSecurity(StrictConfig):
    """How the clients authenticate to the brokers and encrypt (SASL / TLS). The rules: a SASL protocol
    needs a user and a password, SASL or TLS settings need a protocol that uses them."""

    protocol: SecurityProtocol = "PLAINTEXT"
    sasl_mechanism: SaslMechanism = "PLAIN"
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_ca_location: str | None = None  # CA bundle (PEM) that signed the brokers' certificates
    ssl_certificate_location: str | None = None  # client certificate (PEM), for mutual TLS
    ssl_key_location: str | None = None  # client key (PEM)
    ssl_key_password: SecretStr | None = None
    ssl_verify_hostname: bool = True

    @model_validator(mode="after")
    def _check(self) -> KafkaSecurity:
        sasl = self.protocol.startswith("SASL_")
        if sasl and (not self.sasl_username or self.sasl_password is None):
            raise ValueError(f"protocol {self.protocol} needs sasl_username and sasl_password")
        if not sasl and (self.sasl_username or self.sasl_password is not None):
            raise ValueError(f"sasl_username / sasl_password are set but protocol {self.protocol} does not use SASL")
        tls_files = (self.ssl_ca_location, self.ssl_certificate_location, self.ssl_key_location, self.ssl_key_password)
        if not self.protocol.endswith("SSL") and any(v is not None for v in tls_files):
            raise ValueError(f"ssl_* settings are set but protocol {self.protocol} does not use TLS")
        return self

    def librdkafka(self) -> dict[str, Any]:
        """The librdkafka settings (secrets revealed): for client construction only."""
        out: dict[str, Any] = {"security.protocol": self.protocol}
        if self.protocol.startswith("SASL_"):
            assert self.sasl_password is not None
            out["sasl.mechanism"] = self.sasl_mechanism
            out["sasl.username"] = self.sasl_username
            out["sasl.password"] = self.sasl_password.get_secret_value()
        if self.protocol.endswith("SSL"):
            files = {"ssl.ca.location": self.ssl_ca_location, "ssl.certificate.location": self.ssl_certificate_location,
                     "ssl.key.location": self.ssl_key_location}
            out.update({k: v for k, v in files.items() if v})
            if self.ssl_key_password is not None:
                out["ssl.key.password"] = self.ssl_key_password.get_secret_value()
            out["ssl.endpoint.identification.algorithm"] = "https" if self.ssl_verify_hostname else "none"
        return out


class KafkaConnection(StrictConfig):
    """Where the brokers are and how to talk to them; a deployable's ``kafka`` model derives from it."""

    # read when the config is built (not at import), so that KAFKA_BOOTSTRAP_SERVERS set later counts
    bootstrap_servers: str = Field(default_factory=kafka_bootstrap_servers, min_length=1)
    client_id: str | None = Field(default=None, min_length=1)  # librdkafka's client.id (its default: rdkafka)
    security: KafkaSecurity = KafkaSecurity()
    # How values are framed: single_object (default) or confluent, with its registry (docs/wire-format.md).
    wire: WireFormatConfig = WireFormatConfig()
    # Extra librdkafka settings of the consumers and of the producers (tuning); they win over the
    # deployable's own. No secrets here: those go in ``security``.
    consumer: dict[str, Any] = Field(default_factory=dict)
    producer: dict[str, Any] = Field(default_factory=dict)
    # Consumer settings the deployable's correctness rests on, with why: ``consumer`` may repeat them,
    # not change them (an override would win, and e.g. auto-committed offsets lose or repeat samples).
    pinned_consumer: ClassVar[Mapping[str, tuple[Any, str]]] = {}

    @classmethod
    def pinned_consumer_settings(cls) -> dict[str, Any]:
        """The pinned settings as librdkafka takes them (the deployable's consumer starts from these)."""
        return {key: value for key, (value, _) in cls.pinned_consumer.items()}

    @field_validator("consumer")
    @classmethod
    def _keeps_the_pinned(cls, settings: dict[str, Any]) -> dict[str, Any]:
        for key, (value, why) in cls.pinned_consumer.items():
            if key in settings and str(settings[key]).lower() != str(value).lower():
                kept = str(value).lower() if isinstance(value, bool) else value
                raise ValueError(f"{key} is {settings[key]!r}; it must stay {kept} ({why})")
        return settings

    @field_validator("consumer", "producer")
    @classmethod
    def _no_secrets(cls, settings: dict[str, Any]) -> dict[str, Any]:
        secret = sorted(k for k in settings if any(word in k.lower() for word in _SECRET_WORDS))
        if secret:
            raise ValueError(
                f"{', '.join(secret)}: secrets go in kafka.security (held as a secret, never logged), "
                "not in the plain client settings"
            )
        return settings

    def client_settings(self, role: KafkaRole = "admin", base: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The confluent-kafka settings of a client in ``role``: ``base`` (the caller's own settings), then
        the brokers, the client id, the security settings (secrets revealed) and the role's extra settings,
        which win. The one place clients get their settings from; never log what it returns."""
        extra = {"consumer": self.consumer, "producer": self.producer}.get(role, {})
        named = {"client.id": self.client_id} if self.client_id else {}
        return {**(base or {}), "bootstrap.servers": self.bootstrap_servers, **named, **self.security.librdkafka(),
                **extra}


def split_credentials(url: str) -> tuple[str, str | None, str | None]:
    """``url`` without the user and password written in it, and those two (unquoted; None when absent)."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url, None, None
    host = parts.netloc.rsplit("@", 1)[1]
    user = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password is not None else None
    return urlunsplit(parts._replace(netloc=host)), user, password


class RedisTls(StrictConfig):
    """TLS to Redis (a ``rediss://`` url); the files are PEM."""

    ca_file: str | None = None
    cert_file: str | None = None  # client certificate, for mutual TLS
    key_file: str | None = None
    key_password: SecretStr | None = None
    verify: bool = True


class RedisConnection(StrictConfig):
    """Where a Redis is and how to log in. A user or password written in the url is moved to ``username``
    / ``password`` (a SecretStr), so that the url itself can be shown in logs and errors."""

    # read when the config is built (not at import), so that REDIS_URL set later counts
    url: str = Field(default_factory=redis_url)
    username: str | None = None  # Redis 6 ACL user; None: the default user
    password: SecretStr | None = None
    tls: RedisTls | None = None

    @model_validator(mode="before")
    @classmethod
    def _credentials_out_of_the_url(cls, data: Any) -> Any:
        url = data.get("url") if isinstance(data, dict) else None
        if not isinstance(url, str):
            return data
        bare, user, password = split_credentials(url)
        if bare == url:
            return data
        moved = {**data, "url": bare}
        if user:
            moved.setdefault("username", user)
        if password is not None and data.get("password") is None:
            moved["password"] = password
        return moved

    @field_validator("url")
    @classmethod
    def _scheme(cls, url: str) -> str:
        if not url.startswith(_REDIS_SCHEMES):
            raise ValueError(f"expected a url starting {', '.join(_REDIS_SCHEMES)} (rediss: TLS), got {url!r}")
        return url

    @model_validator(mode="after")
    def _check(self) -> RedisConnection:
        if self.tls is not None and not self.url.startswith("rediss://"):
            raise ValueError("redis.tls is set: the url must use the rediss:// scheme")
        return self

    def client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``redis.Redis.from_url(self.url, **kwargs)``: the user, the password and
        TLS (secrets revealed). Build clients with :meth:`client`; never log what this returns."""
        out: dict[str, Any] = {}
        if self.username:
            out["username"] = self.username
        if self.password is not None:
            out["password"] = self.password.get_secret_value()
        tls = self.tls
        if tls is not None:
            files = {"ssl_ca_certs": tls.ca_file, "ssl_certfile": tls.cert_file, "ssl_keyfile": tls.key_file}
            out.update({k: v for k, v in files.items() if v})
            if tls.key_password is not None:
                out["ssl_password"] = tls.key_password.get_secret_value()
            out["ssl_cert_reqs"] = "required" if tls.verify else "none"
            out["ssl_check_hostname"] = tls.verify
        return out

    def client(self, **options: Any) -> redis.Redis:
        """A ``redis.Redis`` for this connection; ``options`` are the caller's (timeouts, retries, decoding)."""
        import redis

        return redis.Redis.from_url(self.url, **options, **self.client_kwargs())
