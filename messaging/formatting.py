"""A body rendered for display: a small Markdown subset, then an allow-list sanitizer.

CONTRACT v1.1, "Editing, deleting, replying, reacting, mentioning"; docs/security.md, "Stored
markup". Two independent walls stand between a body and a page:

1. markdown-it-py (CommonMark) with raw HTML off, so ``<script>`` is text, and with the
   subset a chat needs: emphasis, strikethrough, inline code, fenced code blocks, quotes,
   lists, links and bare URLs made links. Headings, images (a page would fetch an address
   the sender chose), rules, reference definitions and indented code are off: in a chat
   ``#`` and leading spaces are just text.
2. nh3 (ammonia) keeps only the tags and attributes below, links only to http, https and
   mailto, every link with ``rel="noopener noreferrer nofollow"`` and opening in a new tab.

Mentions become ``<span class="mention" data-user="ID">@name</span>``, only for the users
the caller resolved (messaging.mentions) and never inside code. The browser inserts the
result as is and never builds HTML from user text itself.
"""
from __future__ import annotations

import re
from typing import Mapping, cast

import nh3
from linkify_it import LinkifyIt
from markdown_it import MarkdownIt
from markdown_it.renderer import RendererHTML
from markdown_it.rules_inline import StateInline
from markdown_it.token import Token
from markdown_it.utils import EnvType, OptionsDict

# Django's usernames: letters, digits and @ . + - _ (UnicodeUsernameValidator).
USERNAME_AFTER_AT = re.compile(r"@([\w.@+-]{1,150})")
LINK_REL = "noopener noreferrer nofollow"

_ALLOWED_TAGS = {"p", "br", "em", "strong", "s", "code", "pre", "blockquote", "ul", "ol", "li", "a", "span"}
_ALLOWED_ATTRIBUTES = {"a": {"href"}, "ol": {"start"}, "span": {"data-user"}}
_ALLOWED_CLASSES = {"span": {"mention"}}
_URL_SCHEMES = {"http", "https", "mailto"}


def _mention_rule(state: StateInline, silent: bool) -> bool:
    """``@username`` of a user in ``env["mentions"]`` (username, lowercased -> id) becomes a
    mention token; anything else stays text. Only at a word's start (not in ``a@b.c``)."""
    if state.src[state.pos] != "@" or (state.pos > 0 and (state.src[state.pos - 1].isalnum()
                                                          or state.src[state.pos - 1] in "_@.+-")):
        return False
    found = USERNAME_AFTER_AT.match(state.src, state.pos)
    mentions: Mapping[str, int | None] = state.env.get("mentions", {})
    if found is None or not mentions:
        return False
    name = resolve_name(found.group(1), mentions)
    if name is None:
        return False
    if not silent:
        token = state.push("mention", "span", 0)
        token.content = name
        token.meta = {"user": mentions[name.lower()]}
    state.pos += 1 + len(name)
    return True


def resolve_name(candidate: str, known: Mapping[str, object]) -> str | None:
    """The longest prefix of ``candidate`` that is a known username, trailing punctuation
    (``@bob.`` ``@bob,``) falling away; None if none is."""
    name = candidate
    while name:
        if name.lower() in known:
            return name
        if name[-1] not in ".+-@":
            return None
        name = name[:-1]
    return None


def _render_mention(self: RendererHTML, tokens: list[Token], idx: int, options: OptionsDict, env: EnvType) -> str:
    token = tokens[idx]
    user = token.meta["user"]
    attribute = "" if user is None else f' data-user="{int(user)}"'  # None: @all
    return f'<span class="mention"{attribute}>@{_escape(token.content)}</span>'


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def _parser() -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False, "linkify": True, "breaks": True})
    md.enable(["linkify", "strikethrough"])
    md.disable(["heading", "lheading", "image", "hr", "reference", "code", "html_block", "html_inline"])
    md.inline.ruler.before("emphasis", "mention", _mention_rule)
    md.add_render_rule("mention", _render_mention)
    return md


_MARKDOWN = _parser()
_LINKS = cast(LinkifyIt, _MARKDOWN.linkify)  # set: MarkdownIt refuses linkify without linkify-it-py

# A line markdown reads as nothing but text: it starts with a letter (not a digit, which could
# open a list) and holds only letters, digits, spaces and punctuation that neither
# markdown-it's inline rules nor its block rules act on. Such a body renders to one paragraph
# holding the body as is. A property test (tests/messaging/test_formatting.py) checks the
# fast path against the full one; it costs 0.41-0.43x the full path's CPU
# (bench/load/micro.py).
_PLAIN_LINE = re.compile(r"[^\W\d_](?:[^\W_]|[ .,;?'\"()/|+-])*(?<! )")


def _plain_paragraph(body: str) -> str | None:
    """The rendering of a body that is one plain line, or None when markdown must read it."""
    if _PLAIN_LINE.fullmatch(body) is None or _LINKS.test(body):
        return None
    return f"<p>{body}</p>"


def render_markdown(body: str, mentions: Mapping[str, int | None] | None = None) -> tuple[str, set[int | None]]:
    """The display HTML of ``body``, and who it mentions: ``mentions`` maps the lowercased
    usernames that may be mentioned to user ids (``"all": None`` for @all); the second value
    holds the ids actually mentioned outside code (None for @all)."""
    plain = _plain_paragraph(body)
    if plain is not None:
        return plain, set()
    return _render_full(body, mentions)


def _render_full(body: str, mentions: Mapping[str, int | None] | None) -> tuple[str, set[int | None]]:
    env: EnvType = {"mentions": dict(mentions or {})}
    tokens = _MARKDOWN.parse(body, env)
    mentioned: set[int | None] = {
        child.meta["user"] for token in tokens for child in (token.children or ()) if child.type == "mention"
    }
    rendered = _MARKDOWN.renderer.render(tokens, _MARKDOWN.options, env)
    html = nh3.clean(
        rendered, tags=_ALLOWED_TAGS, attributes=_ALLOWED_ATTRIBUTES, allowed_classes=_ALLOWED_CLASSES,
        url_schemes=_URL_SCHEMES, link_rel=LINK_REL, set_tag_attribute_values={"a": {"target": "_blank"}},
        attribute_filter=_absolute_links_only, strip_comments=True,
    ).strip()
    return html, mentioned


def _absolute_links_only(element: str, attribute: str, value: str) -> str | None:
    """nh3 passes relative addresses through whatever the schemes (``[x](/logout)`` would link
    into Parley itself, ``[x]()`` to the page): a link keeps its address only with a scheme
    allowed above, otherwise it is text."""
    if element == "a" and attribute == "href" and value.split(":", 1)[0].lower() not in _URL_SCHEMES:
        return None
    return value


def render_html(body: str, mentions: Mapping[str, int | None] | None = None) -> str:
    return render_markdown(body, mentions)[0]
