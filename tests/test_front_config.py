"""The nginx front's configuration (deploy/nginx.py, ``manage.py nginx_conf``): rendered from
the app's own limits, accepted by Debian's nginx (``nginx -t``), mistakes refused early.

The running front is tested in tests/test_front_nginx.py.
"""

import re
import subprocess
import tempfile
from io import StringIO
from pathlib import Path

from django.core.management import CommandError, call_command
from django.test import SimpleTestCase, override_settings

from deploy.nginx import STREAM_TIMEOUT_MARGIN, FrontConfig, app_limits, fill
from tests.support.nginx import require_nginx
from webchat.conf import WebchatSettings


def directives(text, name) -> list[str]:
    return re.findall(rf"^[ ]*{name} ([^;{{]+);", text, re.MULTILINE)


class AppLimitsTests(SimpleTestCase):
    def test_the_defaults_are_the_apps(self):
        defaults = WebchatSettings({})
        self.assertEqual(app_limits(), {
            "max_body_bytes": 256 * 1024,
            "max_upload_bytes": defaults.max_upload_body,
            "stream_idle_timeout": 300,
        })
        self.assertGreaterEqual(defaults.max_upload_body, 10 * 4 * 1024 * 1024 + 256 * 1024)

    @override_settings(WEBCHAT_DIRECTLINE={"MAX_ACTIVITY_BYTES": 1000, "MAX_FILE_BYTES": 2000,
                                           "MAX_UPLOAD_FILES": 3},
                       WEBCHAT_STREAM={"IDLE_TIMEOUT": 4})
    def test_they_follow_the_settings(self):
        limits = app_limits()
        self.assertEqual(limits["max_body_bytes"], 1000)
        self.assertEqual(limits["max_upload_bytes"], 3 * 2000 + 1000 + 64 * 1024)
        self.assertEqual(limits["stream_idle_timeout"], 4)


class RenderTests(SimpleTestCase):
    def config(self, prefix, **changes):
        options = {
            "prefix": Path(prefix), "listen": "127.0.0.1:8443",
            "replicas": ("127.0.0.1:8001", "127.0.0.1:8002"),
            "certificate": Path(prefix) / "server.pem", "certificate_key": Path(prefix) / "k",
            **app_limits(), **changes,
        }  # fmt: skip
        return FrontConfig(**options)

    def test_limits_and_timeouts_land_where_they_apply(self):
        text = self.config("/srv/front").render()
        self.assertEqual(directives(text, "client_max_body_size"),
                         [str(256 * 1024), str(WebchatSettings({}).max_upload_body)])
        self.assertEqual(set(directives(text, "proxy_read_timeout")),
                         {f"{300 + STREAM_TIMEOUT_MARGIN}s"})
        self.assertEqual(directives(text, "limit_conn webchat_conn_per_ip"), ["64"])
        self.assertIn("rate=20r/s", text)
        self.assertEqual(directives(text, "limit_req"),
                         ["zone=webchat_req_per_ip burst=40 nodelay"])
        self.assertEqual(directives(text, "proxy_set_header X-Forwarded-For"), ["$remote_addr"])
        self.assertEqual(directives(text, "server"), ["127.0.0.1:8001 max_fails=1 fail_timeout=5s",
                                                      "127.0.0.1:8002 max_fails=1 fail_timeout=5s"])
        self.assertNotIn("/etc/nginx", text)
        self.assertNotIn("/var/", text)
        self.assertNotIn("{{", text)

    def test_pinned_listeners_reach_one_replica_each(self):
        text = self.config("/srv/front", pinned=("127.0.0.1:9001", "127.0.0.1:9002")).render()
        self.assertEqual(directives(text, "listen"),
                         ["127.0.0.1:8443 ssl", "127.0.0.1:9001 ssl", "127.0.0.1:9002 ssl"])
        self.assertEqual(
            sorted(set(directives(text, "proxy_pass"))),
            ["http://replica_0", "http://replica_1", "http://webchat_replicas"],
        )

    def test_mistakes_are_refused(self):
        for changes in ({"replicas": ()}, {"pinned": ("127.0.0.1:1",)},
                        {"max_body_bytes": 0}, {"requests_per_second": 0},
                        {"request_burst": -1}):
            with self.subTest(changes=changes), self.assertRaises(ValueError):
                self.config("/srv/front", **changes)
        with self.assertRaisesRegex(KeyError, "nope"):
            fill("a {{ nope }} b", {})

    def test_nginx_accepts_it(self):
        nginx = require_nginx()
        with tempfile.TemporaryDirectory(prefix="webchat-front-config-") as prefix:
            out = StringIO()
            call_command("nginx_conf", "--prefix", prefix, "--listen", "127.0.0.1:18443",
                         "--replica", "127.0.0.1:18001", "--replica", "127.0.0.1:18002",
                         "--pinned", "127.0.0.1:18444", "--pinned", "127.0.0.1:18445",
                         "--self-signed", stdout=out)
            path = out.getvalue().strip()
            self.assertEqual(path, str(Path(prefix).resolve() / "nginx.conf"))
            checked = subprocess.run(
                [nginx, "-t", "-p", prefix, "-c", path, "-e", f"{prefix}/logs/error.log"],
                capture_output=True, text=True, timeout=30,
            )
            self.assertEqual(checked.returncode, 0, checked.stderr)
            self.assertIn("test is successful", checked.stderr)

    def test_the_command_needs_a_certificate(self):
        with tempfile.TemporaryDirectory() as prefix:
            base = ["nginx_conf", "--prefix", prefix, "--listen", "127.0.0.1:1",
                    "--replica", "127.0.0.1:2"]
            with self.assertRaisesRegex(CommandError, "--self-signed"):
                call_command(*base)
            with self.assertRaisesRegex(CommandError, "one per replica"):
                call_command(*base, "--certificate", "c", "--certificate-key", "k",
                             "--pinned", "127.0.0.1:3", "--pinned", "127.0.0.1:4")
