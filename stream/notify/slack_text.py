"""Text for Slack messages: escaping untrusted text, sparklines, the silence command.

Everything that comes from events or annotations (customer ids, endpoints, model names,
summaries) is untrusted: a customer id of ``<!channel>`` must not ping a channel, and
``<http://evil|bank>`` must not draw a disguised link. Slack parses ``&``, ``<`` and ``>`` as
control characters in every text object, so :func:`escape` turns them into entities.
``mrkdwn`` text also parses ``*bold*``, ``_italic_``, ``~strike~`` and backticks;
:func:`escape_mrkdwn` swaps those for look-alike characters Slack does not parse (no
backslash escaping exists in mrkdwn). Prefer ``plain_text`` objects with :func:`escape`.
Look-alikes would corrupt identifiers someone copies (``cus_acme_01`` into a query), so
where mrkdwn cannot be avoided (a message's fallback ``text``) :func:`mrkdwn_with_code`
puts identifiers in inline code spans, inside which mrkdwn applies no formatting.

>>> escape("<!channel> & <@U123>")
'&lt;!channel&gt; &amp; &lt;@U123&gt;'
>>> escape_mrkdwn("*rich* _corp_ <http://evil|bank>")
'∗rich∗ ˍcorpˍ &lt;http://evil|bank&gt;'
>>> sparkline("1,2,3,4,5,6,7,8")
'▁▂▃▄▅▆▇█'
"""

from __future__ import annotations

import math
import re
import shlex
from collections.abc import Iterable, Mapping

BARS = "▁▂▃▄▅▆▇█"
# Look-alikes Slack's mrkdwn does not treat as markup.
_MARKUP = str.maketrans({"*": "∗", "_": "ˍ", "~": "∼", "`": "ˋ"})
_MARKUP_CHARS = frozenset("*_~`")
# Labels that identify an alert, in the order a silence command lists them.
SILENCE_LABELS = ("alertname", "customer_id", "endpoint", "provider", "model")


def escape(text: str) -> str:
    """Slack's three control characters as HTML entities (for plain_text and mrkdwn).

    >>> escape("a&b<c>d")
    'a&amp;b&lt;c&gt;d'
    """
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def escape_mrkdwn(text: str) -> str:
    """:func:`escape`, then ``* _ ~ ``` replaced by look-alikes so no formatting applies.

    >>> escape_mrkdwn("`x` ~y~")
    'ˋxˋ ∼y∼'
    """
    return escape(text).translate(_MARKUP)


def escape_code(text: str) -> str:
    """Text for inside a mrkdwn code block: entities, and no backtick that could close it.

    >>> escape_code("a`b<c")
    'aˋb&lt;c'
    """
    return escape(text).replace("`", "ˋ")


def mrkdwn_with_code(text: str, identifiers: Iterable[str]) -> str:
    """:func:`escape_mrkdwn` of ``text``, except that identifiers :func:`escape_mrkdwn` would
    change (those with ``* _ ~ ```) are inline code spans, exact but for ``& < >`` as
    entities and backticks as look-alikes (:func:`escape_code`).

    Other identifiers need no span: escaping leaves them as they are. An identifier counts
    where it is not part of a longer name (no letter, digit or ``_`` adjoins it, nor ``.``
    or ``-`` joining it to one), so ``cus_a`` is not marked inside ``cus_a-2``, but is
    before a full stop; longer identifiers win over shorter ones.

    >>> ids = ["cus_acme_01", "chat_v2", "acme"]
    >>> print(mrkdwn_with_code("Spike for cus_acme_01 on chat_v2 (acme): *5x*", ids))
    Spike for `cus_acme_01` on `chat_v2` (acme): ∗5x∗
    >>> print(mrkdwn_with_code("cus_a-2 and cus_a.", ["cus_a", "<!here>"]))
    cusˍa-2 and `cus_a`.
    """
    words = sorted({w for w in identifiers if _MARKUP_CHARS & set(w)}, key=len, reverse=True)
    if not words:
        return escape_mrkdwn(text)
    alternatives = "|".join(re.escape(w) for w in words)
    pattern = re.compile(rf"(?<![\w.-])({alternatives})(?![\w]|[.-]\w)")
    parts = pattern.split(text)
    # split() with one group alternates: text, identifier, text, ..., text.
    return "".join(
        f"`{escape_code(part)}`" if i % 2 else escape_mrkdwn(part) for i, part in enumerate(parts)
    )


def truncate(text: str, limit: int) -> str:
    """At most ``limit`` characters, an ellipsis marking a cut.

    >>> truncate("abcdef", 4)
    'abc…'
    """
    return text if len(text) <= limit else text[: limit - 1] + "…"


def parse_series(text: str) -> list[float]:
    """Comma-separated numbers; anything that is not a finite number is skipped.

    >>> parse_series("1, 2.5,x,,nan,3")
    [1.0, 2.5, 3.0]
    """
    values = []
    for part in text.split(","):
        try:
            x = float(part)
        except ValueError:
            continue
        if math.isfinite(x):
            values.append(x)
    return values


def sparkline(recent: str, width: int = 60) -> str:
    """The last ``width`` values of a comma-separated series as Unicode bars, scaled min..max.

    Empty when there are no numbers; a flat series is drawn at the lowest bar.

    >>> sparkline("")
    ''
    >>> sparkline("5,5,5")
    '▁▁▁'
    >>> sparkline("0,10,5", width=2)
    '█▁'
    """
    values = parse_series(recent)[-width:]
    if not values:
        return ""
    low, high = min(values), max(values)
    span = high - low
    if span <= 0:
        return BARS[0] * len(values)
    top = len(BARS) - 1
    return "".join(BARS[round((x - low) / span * top)] for x in values)


def matcher(name: str, value: str) -> str:
    """A label matcher ``name="value"`` with ``\\`` and ``"`` escaped as in Alertmanager.

    >>> print(matcher("customer_id", 'a"b'))
    customer_id="a\\"b"
    """
    quoted = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'{name}="{quoted}"'


def silence_command(labels: Mapping[str, str], duration: str = "2h") -> str:
    """The shell command that silences alerts with these identifying labels.

    >>> cmd = silence_command({"alertname": "spend_spike", "severity": "warning",
    ...                        "customer_id": "acme"})
    >>> print(cmd.replace(" --", "\\n  --"))
    spendwatch silence add 'alertname="spend_spike"' 'customer_id="acme"'
      --duration 2h
      --comment "..."
    """
    matchers = [shlex.quote(matcher(k, labels[k])) for k in SILENCE_LABELS if k in labels]
    return f'spendwatch silence add {" ".join(matchers)} --duration {duration} --comment "..."'
