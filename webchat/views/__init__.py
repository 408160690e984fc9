"""The Direct Line 3.0 REST API, one module per concept (routes in ``webchat/urls.py``)."""
