from rest_framework.pagination import LimitOffsetPagination as _LimitOffsetPagination


class LimitOffsetPagination(_LimitOffsetPagination):
    """``?limit=&offset=``; 50 by default, at most 1000 a page."""

    default_limit = 50
    max_limit = 1000
