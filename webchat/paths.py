"""Which requests belong to the Direct Line REST API (importable before Django is set up)."""

DIRECTLINE_PREFIX = "/v3/directline"


def is_directline_path(path_info: str) -> bool:
    """Whether a path (without the script prefix) is ``/v3/directline`` or below it."""
    return path_info.startswith(DIRECTLINE_PREFIX) and (
        len(path_info) == len(DIRECTLINE_PREFIX) or path_info[len(DIRECTLINE_PREFIX)] == "/"
    )


def is_directline(request) -> bool:
    return is_directline_path(request.path_info)
