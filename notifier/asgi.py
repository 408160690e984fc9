"""ASGI glue for the backplane. Placeholder until the runtime lands (issue 2)."""


def with_backplane(application):
    return application
