"""``loads``: ``json.loads`` that rejects the non-standard ``Infinity`` / ``NaN`` tokens."""

import json


def loads(text: str):
    def refuse(token):
        raise ValueError(f"non-standard JSON token {token}")

    return json.loads(text, parse_constant=refuse)
