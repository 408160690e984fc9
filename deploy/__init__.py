"""Production deployment: the nginx front's configuration and its local TLS certificate.

See docs/deploy.md; ``scripts/cluster --production`` uses both.
"""
