"""The threads that run the Direct Line views, each keeping its database connection.

``WEBCHAT_DIRECTLINE["DB_THREADS"]`` of them per process (read when the first request
starts them): at most that many Direct Line requests touch the database at once.
:func:`webchat.views.errors.directline_view` sends every view here.
"""

from webchat.conf import settings
from webchat.db_threads import DatabaseThreads

api_threads = DatabaseThreads("directline-db", lambda: settings.db_threads)
