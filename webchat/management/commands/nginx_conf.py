"""``manage.py nginx_conf``: write the nginx front's configuration (deploy/nginx.py).

The body limits and the WebSocket timeout come from this process's settings, so the proxy
refuses exactly what the replicas would. Prints the path of the written ``nginx.conf``.
"""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from deploy.nginx import FrontConfig, app_limits
from deploy.tls import make_certificates

DEFAULTS = FrontConfig.__dataclass_fields__


class Command(BaseCommand):
    help = "Write <prefix>/nginx.conf: nginx (TLS, limits, WebSockets) in front of replicas."

    def add_arguments(self, parser):
        def default(name):
            return DEFAULTS[name].default

        parser.add_argument("--prefix", required=True, type=Path,
                            help="nginx's prefix folder: the config, pid, logs, temp files.")
        parser.add_argument("--listen", required=True,
                            help="The public TLS listener, host:port, e.g. 0.0.0.0:443.")
        parser.add_argument("--replica", action="append", required=True, dest="replicas",
                            help="A daphne replica, host:port (repeat for each).")
        parser.add_argument("--pinned", action="append", default=[],
                            help="A TLS listener for one replica only, in --replica order "
                            "(repeat: one per replica, or none).")
        parser.add_argument("--certificate", type=Path, help="The server certificate (PEM).")
        parser.add_argument("--certificate-key", type=Path, help="Its private key (PEM).")
        parser.add_argument("--self-signed", action="store_true",
                            help="Make a local CA and a certificate for localhost/127.0.0.1 "
                            "in <prefix>/tls (clients must trust <prefix>/tls/ca.pem).")
        parser.add_argument("--server-name", default=default("server_name"),
                            help="nginx server_name (default: any).")
        parser.add_argument("--connections-per-ip", type=int,
                            default=default("connections_per_ip"),
                            help="Open connections (sockets included) per client address.")
        parser.add_argument("--requests-per-second", type=int,
                            default=default("requests_per_second"),
                            help="Sustained requests per second per client address.")
        parser.add_argument("--request-burst", type=int, default=default("request_burst"),
                            help="Requests per client address allowed above the rate at once.")
        parser.add_argument("--worker-processes", default=default("worker_processes"),
                            help="nginx worker processes ('auto': one per core).")

    def handle(self, *args, **options):
        prefix = options["prefix"].resolve()
        if options["self_signed"]:
            if options["certificate"] or options["certificate_key"]:
                raise CommandError("--self-signed makes the certificate: drop --certificate.")
            made = make_certificates(prefix / "tls")
            certificate, key = made.certificate, made.key
        elif options["certificate"] and options["certificate_key"]:
            certificate = options["certificate"].resolve()
            key = options["certificate_key"].resolve()
        else:
            raise CommandError("Give --certificate and --certificate-key, or --self-signed.")
        try:
            config = FrontConfig(
                prefix=prefix, listen=options["listen"], replicas=tuple(options["replicas"]),
                pinned=tuple(options["pinned"]), certificate=certificate, certificate_key=key,
                server_name=options["server_name"],
                connections_per_ip=options["connections_per_ip"],
                requests_per_second=options["requests_per_second"],
                request_burst=options["request_burst"],
                worker_processes=options["worker_processes"], **app_limits(),
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(str(config.write()))
