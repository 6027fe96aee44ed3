"""The local development Kafka broker: genuine Apache Kafka (KRaft, one node) on 127.0.0.1.

Jars come from Maven Central via `mvn` (pom.xml beside this file) into
`~/.cache/framewire/kafka/<version>/libs`; run state lives in `~/.cache/framewire/kafka/run/<port>`.
Production sets `FRAMEWIRE_KAFKA_BOOTSTRAP` (or `kafka.bootstrap_servers`) and nothing here starts.
Functions print nothing: they return data and raise BrokerError (an OSError) with what to do.
"""

from pipeline.broker.config import (
    DEFAULT_PORT,
    ENV_BOOTSTRAP,
    BrokerSecurity,
    choose_bootstrap,
    local_bootstrap,
    log4j2_xml,
    new_cluster_id,
    render_properties,
    server_properties,
)
from pipeline.broker.errors import BrokerError, MissingToolError
from pipeline.broker.jars import default_cache_root, ensure_jars, find_java, find_mvn, kafka_version, libs_dir
from pipeline.broker.local import BrokerStatus, LocalBroker, resolve_bootstrap

__all__ = [
    "DEFAULT_PORT",
    "ENV_BOOTSTRAP",
    "BrokerError",
    "BrokerSecurity",
    "BrokerStatus",
    "LocalBroker",
    "MissingToolError",
    "choose_bootstrap",
    "default_cache_root",
    "ensure_jars",
    "find_java",
    "find_mvn",
    "kafka_version",
    "libs_dir",
    "local_bootstrap",
    "log4j2_xml",
    "new_cluster_id",
    "render_properties",
    "resolve_bootstrap",
    "server_properties",
]
