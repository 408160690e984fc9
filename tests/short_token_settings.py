"""The service's settings with a 2-second token TTL, for tests only (webchat.W050 says so).

Started as a replica's DJANGO_SETTINGS_MODULE by tests.test_e2e_token_renewal: the seed's
variable cannot go under 60 s, and hours of renewal must fit in a minute.
"""

from webchat.settings import *  # noqa: F403
from webchat.settings import WEBCHAT_TOKENS

WEBCHAT_TOKENS = {**WEBCHAT_TOKENS, "TTL": 2}
