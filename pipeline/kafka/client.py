"""One Kafka client configuration for every producer, consumer and admin client: TLS and SASL.

``client_config(spec.kafka)`` turns the typed ``kafka.security`` settings into kafka-python
keyword arguments. Secrets never live in the config: the username and password are read
from environment variables or files the config names, at the moment a client connects, so
they never travel through Ray, logs, errors or the command line.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipeline.spec import KafkaSecuritySpec, KafkaSpec

__all__ = ["KafkaAuthError", "KafkaSecurityError", "check_connection", "client_config", "describe_security",
           "redact"]

SECRET_KEYS = ("sasl_plain_password", "ssl_password")


class KafkaSecurityError(ValueError):
    """The security settings cannot be used as given (a missing secret or file); the message says how to fix it."""


class KafkaAuthError(PermissionError):
    """The cluster refused the client: SASL authentication or the TLS handshake failed."""


def _security(kafka: KafkaSpec | KafkaSecuritySpec | None) -> KafkaSecuritySpec:
    from pipeline.spec import KafkaSecuritySpec

    if kafka is None:
        return KafkaSecuritySpec()
    if isinstance(kafka, KafkaSecuritySpec):
        return kafka
    return kafka.security


def _secret(what: str, value: str | None, env: str | None, file: str | None, environ: Mapping[str, str]) -> str | None:
    """A value given inline (usernames only), else from the file, else from the environment variable."""
    if value:
        return value
    if file:
        path = Path(file).expanduser()
        try:
            text = path.read_text().strip()
        except OSError as exc:
            raise KafkaSecurityError(f"kafka.security.{what}_file {path}: cannot read it ({exc.strerror}); "
                                     "mount the secret there or set the path to an existing file") from None
        if not text:
            raise KafkaSecurityError(f"kafka.security.{what}_file {path} is empty; write the {what} into it")
        return text
    if env:
        got = environ.get(env, "").strip()
        return got or None
    return None


def client_config(kafka: KafkaSpec | KafkaSecuritySpec | None, *,
                  environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """kafka-python keyword arguments (``security_protocol``, ``sasl_*``, ``ssl_*``) for ``kafka.security``.

    Pass them to KafkaProducer, KafkaConsumer or KafkaAdminClient next to ``bootstrap_servers``.
    Raises KafkaSecurityError naming the variable or file to set when a secret is missing.

    >>> client_config(None)
    {'security_protocol': 'PLAINTEXT'}
    >>> from pipeline.spec import KafkaSecuritySpec
    >>> sec = KafkaSecuritySpec(protocol="SASL_SSL", username="framewire", password_env="PW")
    >>> conf = client_config(sec, environ={"PW": "s3cret"})
    >>> conf["sasl_mechanism"], conf["sasl_plain_username"], redact(conf)["sasl_plain_password"]
    ('SCRAM-SHA-512', 'framewire', '***')
    """
    sec = _security(kafka)
    env = os.environ if environ is None else environ
    conf: dict[str, Any] = {"security_protocol": sec.protocol}
    if sec.protocol.startswith("SASL_"):
        user = _secret("username", sec.username, sec.username_env, sec.username_file, env)
        password = _secret("password", None, sec.password_env, sec.password_file, env)
        if not user:
            raise KafkaSecurityError(f"kafka.security: {sec.protocol} needs a username: set kafka.security.username, "
                                     f"the environment variable {sec.username_env or '(username_env)'} or "
                                     "kafka.security.username_file")
        if not password:
            raise KafkaSecurityError(f"kafka.security: {sec.protocol} needs the password of {user!r}: set the "
                                     f"environment variable {sec.password_env or '(password_env)'} or "
                                     "kafka.security.password_file (never on the command line)")
        conf.update(sasl_mechanism=sec.sasl_mechanism, sasl_plain_username=user, sasl_plain_password=password)
    if sec.protocol.endswith("SSL"):
        for key in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
            path = getattr(sec, key)
            if path is None:
                continue
            if not Path(path).expanduser().is_file():
                raise KafkaSecurityError(f"kafka.security.{key} {path} does not exist; mount the file there "
                                         "(e.g. the Strimzi cluster CA: <cluster>-cluster-ca-cert, key ca.crt)")
            conf[key] = str(Path(path).expanduser())
        conf["ssl_check_hostname"] = sec.ssl_check_hostname
        key_password = _secret("ssl_key_password", None, sec.ssl_key_password_env, None, env)
        if key_password:
            conf["ssl_password"] = key_password
    return conf


def redact(conf: Mapping[str, Any]) -> dict[str, Any]:
    """``conf`` with every secret replaced by ``***`` (for logs and error messages)."""
    return {k: ("***" if k in SECRET_KEYS and v else v) for k, v in conf.items()}


def describe_security(kafka: KafkaSpec | KafkaSecuritySpec | None) -> str:
    """One line for messages, with no secret: ``SASL_SSL SCRAM-SHA-512 as user framewire``.

    >>> describe_security(None)
    'PLAINTEXT'
    """
    sec = _security(kafka)
    if not sec.protocol.startswith("SASL_"):
        return sec.protocol
    who = sec.username or (f"the user in ${sec.username_env}" if sec.username_env else "the user in username_file")
    return f"{sec.protocol} {sec.sasl_mechanism} as {who}"


class _RedactSecrets(logging.Filter):
    """kafka-python's admin client logs its whole configuration at DEBUG: mask the secrets in it."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, Mapping):  # log("%s", one_dict) keeps the dict itself as args
            record.args = redact(record.args)
        elif isinstance(record.args, tuple) and any(isinstance(a, Mapping) for a in record.args):
            record.args = tuple(redact(a) if isinstance(a, Mapping) else a for a in record.args)
        return True


logging.getLogger("kafka.admin.client").addFilter(_RedactSecrets())

_CHECKED: set[tuple[str, str]] = set()
_CHECK_LOCK = threading.Lock()
_AUTH_MARKS = ("SaslAuthenticationFailed", "Handshake failed", "CERTIFICATE_VERIFY_FAILED", "UnsupportedSaslMechanism",
               "IllegalSaslState")


class _Capture(logging.Handler):
    """Keeps kafka-python's connection failures, which it logs and retries instead of raising."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.reasons: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        args = record.args if isinstance(record.args, tuple) else ()
        for arg in args:
            text = str(arg)
            if isinstance(arg, BaseException) and any(m in text or m in type(arg).__name__ for m in _AUTH_MARKS):
                self.reasons.append(text)
        if args and _dropped_during_login(args[0]):
            # The broker answered ApiVersions, then closed the socket before the SASL exchange finished
            # without sending its error response (it does so now and then over TLS after a delayed close):
            # that is the credentials being refused, not a broker that does not answer.
            mech = getattr(args[0], "config", {}).get("sasl_mechanism")
            self.reasons.append(f"SaslAuthenticationFailed: the broker closed the connection while checking the "
                                f"{mech} login (invalid credentials or unknown user)")


def _dropped_during_login(conn: Any) -> bool:
    """A kafka-python connection lost after the broker's ApiVersions answer and before its SASL login completed."""
    try:
        return bool(conn.sasl_enabled and conn.broker_version_data is not None and conn.init_future.failed())
    except AttributeError:  # not a connection (or another kafka-python layout): nothing to learn here
        return False


def check_connection(bootstrap: str, kafka: KafkaSpec | KafkaSecuritySpec | None, *,
                     timeout_s: float = 10.0) -> None:
    """Connect once with ``kafka.security`` and fail fast with the reason, before any long-lived client starts.

    kafka-python retries a refused login until its bootstrap timeout and then reports only
    "Unable to bootstrap"; this names the cause instead: KafkaAuthError (wrong password, unknown
    user, untrusted certificate) or ConnectionError (nothing answers). Success is remembered per
    process; PLAINTEXT is not checked (the clients' own errors say enough there).
    """
    sec = _security(kafka)
    if sec.protocol == "PLAINTEXT":
        return
    conf = client_config(sec)
    key = (bootstrap, hashlib.sha256(repr(sorted(conf.items())).encode()).hexdigest())  # no secret kept in clear
    with _CHECK_LOCK:
        if key in _CHECKED:
            return
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    capture = _Capture()
    loggers = [logging.getLogger("kafka.net.manager"), logging.getLogger("kafka.net.connection")]
    saved = [(lg.level, lg.propagate, lg.disabled) for lg in loggers]
    for lg in loggers:
        lg.addHandler(capture)
        lg.disabled = False  # a logging.config.dictConfig elsewhere (Ray's, a host application's) may have disabled it
        if lg.getEffectiveLevel() > logging.WARNING:  # the CLI silences kafka-python; hear it, but print nothing
            lg.setLevel(logging.WARNING)
            lg.propagate = False
    ms = int(timeout_s * 1000)
    try:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="framewire-preflight", request_timeout_ms=ms,
                                 bootstrap_timeout_ms=ms, **conf)
        admin.close()
    except (KafkaError, OSError) as exc:
        who = describe_security(sec)
        if capture.reasons:
            reason = capture.reasons[-1]
            fix = ("check the password (kafka.security.password_env / password_file) and the user name"
                   if "Sasl" in reason else "check kafka.security.ssl_cafile: it must be the CA that signed the "
                   "brokers' certificates (Strimzi: <cluster>-cluster-ca-cert, key ca.crt)")
            raise KafkaAuthError(f"Kafka {bootstrap} refused the connection ({who}): {reason}; {fix}") from None
        raise ConnectionError(f"Kafka {bootstrap} did not answer within {timeout_s:.0f}s ({who}): "
                              f"{type(exc).__name__}: {exc}; check the address and that the listener speaks "
                              f"{sec.protocol}") from None
    finally:
        for lg, (level, propagate, disabled) in zip(loggers, saved, strict=True):
            lg.removeHandler(capture)
            lg.setLevel(level)
            lg.propagate = propagate
            lg.disabled = disabled
    with _CHECK_LOCK:
        _CHECKED.add(key)
