"""The nginx front's configuration, rendered from deploy/nginx*.conf.template.

``python manage.py nginx_conf`` renders it with the app's limits read from settings;
tests/support/nginx.py and ``scripts/cluster --production`` run what it writes. See
docs/deploy.md for what each part does and why.
"""

import re
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
MAIN_TEMPLATE = HERE / "nginx.conf.template"
SERVER_TEMPLATE = HERE / "nginx-server.conf.template"
#: The upstream of every replica together; ``replica_<i>`` upstreams hold one each.
BALANCED = "webchat_replicas"
#: Seconds the proxy waits on a quiet WebSocket beyond the app's own idle timeout, so the
#: app's close code (4408) is what a client sees, never a cut connection.
STREAM_TIMEOUT_MARGIN = 30
_PLACEHOLDER = re.compile(r"\{\{ (\w+) \}\}")


def fill(template: str, values: dict) -> str:
    """Replace each ``{{ name }}``; a placeholder without a value is an error."""

    def value(match):
        name = match.group(1)
        if name not in values:
            raise KeyError(f"no value for {{{{ {name} }}}} in the nginx template")
        return str(values[name])

    return _PLACEHOLDER.sub(value, template)


@dataclass(frozen=True)
class FrontConfig:
    """What one nginx front needs. Addresses are ``host:port``.

    ``pinned`` listeners, one per replica, each reach that replica only: tests address a
    given replica through the proxy with them, and an operator can look at one replica.
    """

    prefix: Path
    listen: str
    replicas: tuple[str, ...]
    certificate: Path
    certificate_key: Path
    max_body_bytes: int
    max_upload_bytes: int
    stream_idle_timeout: float
    pinned: tuple[str, ...] = ()
    server_name: str = "_"
    connections_per_ip: int = 64
    requests_per_second: int = 20
    request_burst: int = 40
    worker_processes: str = "1"
    worker_connections: int = 4096

    def __post_init__(self):
        if not self.replicas:
            raise ValueError("the front needs at least one replica")
        if self.pinned and len(self.pinned) != len(self.replicas):
            raise ValueError("pinned listeners: one per replica, or none")
        for name in ("max_body_bytes", "max_upload_bytes", "connections_per_ip",
                     "requests_per_second", "worker_connections"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, not {getattr(self, name)}")
        if self.request_burst < 0:
            raise ValueError(f"request_burst must be 0 or more, not {self.request_burst}")

    @property
    def stream_timeout(self) -> int:
        return int(self.stream_idle_timeout) + STREAM_TIMEOUT_MARGIN

    def render(self) -> str:
        """The whole nginx.conf."""
        upstreams = [_upstream(BALANCED, self.replicas)]
        servers = [self._server(self.listen, BALANCED)]
        for index, listen in enumerate(self.pinned):  # none, or one per replica
            upstreams.append(_upstream(f"replica_{index}", (self.replicas[index],)))
            servers.append(self._server(listen, f"replica_{index}"))
        return fill(MAIN_TEMPLATE.read_text(), {
            "prefix": self.prefix,
            "worker_processes": self.worker_processes,
            "worker_connections": self.worker_connections,
            "requests_per_second": self.requests_per_second,
            "upstreams": "\n".join(upstreams),
            "servers": "\n".join(servers),
        })

    def _server(self, listen: str, upstream: str) -> str:
        return fill(SERVER_TEMPLATE.read_text(), {
            "listen": listen,
            "server_name": self.server_name,
            "certificate": self.certificate,
            "certificate_key": self.certificate_key,
            "connections_per_ip": self.connections_per_ip,
            "request_burst": self.request_burst,
            "max_body_bytes": self.max_body_bytes,
            "max_upload_bytes": self.max_upload_bytes,
            "upstream": upstream,
            "stream_timeout": self.stream_timeout,
        })

    def write(self) -> Path:
        """Make the prefix's folders and write ``<prefix>/nginx.conf``; return its path."""
        for folder in ("logs", "temp"):
            (self.prefix / folder).mkdir(parents=True, exist_ok=True)
        # nginx's workers run as an unprivileged user when it starts as root: they must
        # reach the temporary folders it creates for them.
        self.prefix.chmod(0o755)
        path = self.prefix / "nginx.conf"
        path.write_text(self.render())
        return path


def app_limits() -> dict:
    """The body limits and stream idle timeout of the app's settings (Django set up), as
    ``FrontConfig`` keyword arguments: the proxy refuses exactly what the app would."""
    from webchat.conf import settings

    return {
        "max_body_bytes": settings.max_activity_bytes,
        "max_upload_bytes": settings.max_upload_body,
        "stream_idle_timeout": settings.idle_timeout,
    }


def _upstream(name: str, replicas) -> str:
    servers = "\n".join(f"        server {replica} max_fails=1 fail_timeout=5s;"
                        for replica in replicas)
    # least_conn: streams are long-lived, so balance open connections, not requests.
    return (f"    upstream {name} {{\n        least_conn;\n{servers}\n"
            "        keepalive 32;\n    }\n")
