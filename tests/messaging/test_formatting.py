"""Bodies rendered for display (messaging.formatting): the Markdown subset, clickable links,
mention highlights, and nothing a body says can become markup that runs (issue 12, "XSS")."""
from __future__ import annotations

from html.parser import HTMLParser

import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from messaging import formatting
from messaging.formatting import LINK_REL, render_html, render_markdown

ALLOWED = {"p": set(), "br": set(), "em": set(), "strong": set(), "s": set(), "code": set(), "pre": set(),
           "blockquote": set(), "ul": set(), "ol": {"start"}, "li": set(), "span": {"class", "data-user"},
           "a": {"href", "rel", "target", "title"}}


class Tags(HTMLParser):
    """Every start tag with its attributes, as a browser's parser would see them."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.seen.append((tag, dict(attrs)))


def tags_of(html: str) -> list[tuple[str, dict[str, str | None]]]:
    parser = Tags()
    parser.feed(html)
    parser.close()
    return parser.seen


def assert_inert(html: str) -> None:
    for tag, attrs in tags_of(html):
        assert tag in ALLOWED, f"<{tag}> in {html!r}"
        assert set(attrs) <= ALLOWED[tag], f"<{tag} {attrs}> in {html!r}"
        if tag == "a":
            # The sanitizer drops a disallowed href and keeps the text: an <a> without one is no link.
            if "href" in attrs:
                assert (attrs["href"] or "").split(":", 1)[0].lower() in ("http", "https", "mailto"), html
            assert attrs["rel"] == LINK_REL
        if tag == "span":
            assert attrs.get("class") == "mention"


HOSTILE = [
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    '<iframe src="https://evil.example"></iframe>',
    "[click](javascript:alert(1))",
    "[click](JaVaScRiPt:alert(1))",
    "[click](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
    "[click](vbscript:msgbox(1))",
    '<a href="javascript:alert(1)">x</a>',
    "<svg onload=alert(1)>",
    '"><script>alert(1)</script>',
    "![x](https://evil.example/pixel.png)",
    "<details open ontoggle=alert(1)>",
    "[x](https://ok.example\" onmouseover=\"alert(1))",
    "`<script>alert(1)</script>`",
    "```\n<script>alert(1)</script>\n```",
    "> <img src=x onerror=alert(1)>",
    "- <b onclick=alert(1)>x</b>",
    "&lt;script&gt;alert(1)&lt;/script&gt;",
    "<style>body{display:none}</style>",
    "<form action=https://evil.example><input></form>",
    # Relative addresses (into Parley itself, or the page) are no links either.
    "[click](/api/v1/auth/logout)",
    "[click]()",
    "[](<>)",
    "[click](#top)",
    "[click](//evil.example/path)",
]


@pytest.mark.parametrize("body", HOSTILE)
def test_hostile_bodies_render_as_inert_text(body):
    html = render_html(body)
    assert_inert(html)
    assert "<script" not in html and "<img" not in html and "<iframe" not in html


@hypothesis_settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(list("<>\"'=/:;&#`*_~[]()!@ \nabcjvsript") + [
    "javascript:", "onerror=", "<script>", "https://", "<img src=x ", "<a href=", "@bob", "@all", "](", "> ", "- "]),
    max_size=60).map("".join))
def test_no_body_produces_a_tag_or_attribute_outside_the_allow_list(body):
    assert_inert(render_html(body, {"bob": 7, "all": None}))


def test_the_markdown_subset_renders():
    html = render_html("*em* **strong** ~~gone~~ `code`\n\n> quote\n\n- one\n- two\n\n3. three\n\n```\nblock\n```")
    for fragment in ("<em>em</em>", "<strong>strong</strong>", "<s>gone</s>", "<code>code</code>",
                     "<blockquote>", "<ul>", '<ol start="3">', "<pre><code>block"):
        assert fragment in html


def test_headings_images_and_raw_html_stay_text():
    assert render_html("# not a heading") == "<p># not a heading</p>"
    assert "<img" not in render_html("![pixel](https://tracker.example/p.png)")
    assert render_html("<b>bold</b>") == "<p>&lt;b&gt;bold&lt;/b&gt;</p>"


def test_links_are_clickable_and_open_safely():
    html = render_html("see https://example.com/a?b=1 and [docs](https://docs.example)")
    (first, second) = [attrs for tag, attrs in tags_of(html) if tag == "a"]
    assert first["href"] == "https://example.com/a?b=1" and second["href"] == "https://docs.example"
    assert first["rel"] == second["rel"] == "noopener noreferrer nofollow"
    assert first["target"] == "_blank"


def test_mentions_are_highlighted_outside_code_and_reported():
    html, mentioned = render_markdown("hi @bob, @Bob. `@bob` @robert @all", {"bob": 7, "all": None})
    assert html.count('<span class="mention" data-user="7">') == 2
    assert "<code>@bob</code>" in html and "@robert" in html
    assert '<span class="mention">@all</span>' in html
    assert mentioned == {7, None}


def test_an_email_address_is_not_a_mention():
    html, mentioned = render_markdown("write to me@bob.example", {"bob": 7})
    assert mentioned == set() and 'class="mention"' not in html


# The fast path's own alphabet, then what sits at its edge: what makes a list or a link,
# letters and digits of other scripts, and characters it must hand to the full renderer.
PLAIN_PIECES = list("abcXYZ019 .,;?'\"()/|+-") + ["é", "漢", "ß", "٣", "²", "ab.cd", "pa3|1765.12|x"]
EDGE_PIECES = ["\u00a0", "\t", "\n", "*", "_", "`", "~", "<", "&", "#", ">", "[", "]", "!", ":", "@", "\\",
               "example.com", "www.", "//localhost", "1.", "2)", "- ", "+ ", "http://x.org", " .com", "localhost",
               "1.2.3.4", "a.b.io"]
BODIES_NEAR_THE_FAST_PATH = st.one_of(
    st.lists(st.sampled_from(PLAIN_PIECES), max_size=30),
    st.lists(st.sampled_from(PLAIN_PIECES + EDGE_PIECES), max_size=30),
).map("".join)


@hypothesis_settings(max_examples=1500, deadline=None)
@given(BODIES_NEAR_THE_FAST_PATH)
def test_the_plain_line_fast_path_renders_exactly_as_markdown_does(body):
    assert render_markdown(body) == formatting._render_full(body, None)


@pytest.mark.parametrize("body", ["hello there, how are you?", 'say "hi" (now) | a/b +1 - ok', "pa3|1765.12|xxxx",
                                  "Grüße aus Köln", "漢字 ok"])
def test_ordinary_sentences_take_the_fast_path(body):
    assert formatting._plain_paragraph(body) == f"<p>{body}</p>"


@pytest.mark.parametrize("body", ["1) a list", "see example.com", "x //localhost", "trailing ", " leading", "a_b",
                                  "two\nlines", "@bob", ""])
def test_bodies_markdown_acts_on_take_the_full_path(body):
    assert formatting._plain_paragraph(body) is None
