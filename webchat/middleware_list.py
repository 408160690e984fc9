"""``settings.MIDDLEWARE`` as a list whose ``in`` also finds subclasses.

Django's security checks ask ``"django.middleware.security.SecurityMiddleware" in
settings.MIDDLEWARE`` (likewise for the clickjacking, CSRF and session middleware): a string
comparison. ``webchat.middleware`` lists subclasses of those classes, so the checks reported
them missing (security.W001-W003, false) and skipped every check that needs them: HSTS
(W004), SSL redirect (W008), secure session and CSRF cookies (W012, W016). With this list a
dotted path is "in" the list when an entry is that class or a subclass of it, as the admin's
own middleware checks already decide (``django.contrib.admin.checks._contains_subclass``).
Kept out of ``webchat.middleware`` so that settings can import it before Django is set up.
"""

from django.utils.module_loading import import_string


class MiddlewareList(list):
    def __contains__(self, path):
        if list.__contains__(self, path):
            return True
        from django.apps import apps

        if not isinstance(path, str) or not apps.ready:
            return False  # middleware modules may import models: only once apps are ready
        try:
            wanted = import_string(path)
        except ImportError:
            return False
        for entry in self:
            try:
                candidate = import_string(entry)
            except ImportError:
                continue
            if isinstance(candidate, type) and isinstance(wanted, type) and issubclass(
                candidate, wanted
            ):
                return True
        return False
